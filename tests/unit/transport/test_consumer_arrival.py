"""ConsumerCore's arrival path without sockets: the bulk dedup check, its per-item fallback, and a Deliver
with nothing live in it."""

from rollspec.transport import codec, segments
from rollspec.transport.channel import Delivery
from rollspec.transport.config import ConsumerConfig
from rollspec.transport.consumer_core import ConsumerCore
from rollspec.transport.protocol import Deliver, Heartbeat


class _Frame:
    """What ConsumerCore reads of a zmq.Frame."""

    def __init__(self, data: bytes) -> None:
        self.buffer = data
        self.bytes = data

    def __len__(self) -> int:
        return len(self.buffer)


class _Loop:
    def __init__(self) -> None:
        self.woken = 0

    def wake(self) -> None:
        self.woken += 1

    def send(self, frames: list) -> None:
        pass


def _core() -> ConsumerCore:
    core = ConsumerCore("q", ConsumerConfig())
    core.loop = _Loop()  # type: ignore[assignment]
    return core


def _deliver(core: ConsumerCore, parcel: int, ids: list[str], live: list[int]) -> None:
    items = [Heartbeat(queue="q", role="producer", window_items=i + 1, window_bytes=1, held=[], acked=[], parcels=[])
             for i in range(len(ids))]
    wire = segments.encode(items, ids, checksum_tensors=False)
    header = codec.encode_trusted(Deliver, segment=parcel, parcel=parcel, count=len(ids), live=live,
                                  attempts=[1] * len(live), ids=ids, id_prefix="", id_first=0,
                                  sizes=[] if wire.packed else wire.sizes, nframes=[] if wire.packed else wire.nframes,
                                  blob_crc=wire.blob_crc, frame_crcs=[], packed=wire.packed, confirmed=[],
                                  confirmed_parcels=[])
    core.on_message([_Frame(header[0]), _Frame(wire.blob)])


def test_fresh_parcel_is_held_whole_and_a_still_held_id_is_dropped_from_a_later_one():
    core = _core()
    _deliver(core, 1, ["a", "b", "c"], [0, 1, 2])
    assert [entry.ids for entry in core.ready] == [["a", "b", "c"]]
    assert set(core.held) == {"a", "b", "c"} and core.parcels[1][1:3] == [3, False]
    _deliver(core, 2, ["c", "d"], [0, 1])  # "c" still held under parcel 1: only "d" is new
    assert core.ready[-1].ids == ["d"] and core.held["d"] == (2 << 32) | 1
    assert core.stats.duplicates_dropped == 1
    assert core.parcels[2][1:3] == [1, True]  # not handed over whole: its acks go as pairs


def test_acked_id_arriving_again_is_re_acked_not_handed_over():
    core = _core()
    _deliver(core, 1, ["a", "b"], [0, 1])
    core.ready.clear()
    core.done.add_many(["a"])
    del core.held["a"]
    _deliver(core, 2, ["a", "e"], [0, 1])
    assert core.ready[-1].ids == ["e"] and core.acks == [(2 << 32) | 0]


def _compact(core: ConsumerCore, parcel: int, prefix: str, first: int, count: int, attempts: list[int],
             live: list[int] = []) -> None:
    """A Deliver in its compact forms (ids as a run, sizes / nframes omitted, `live` empty: every item)."""
    items = [Heartbeat(queue="q", role="producer", window_items=i + 1, window_bytes=1, held=[], acked=[], parcels=[])
             for i in range(count)]
    wire = segments.encode(items, [f"{prefix}{k:x}" for k in range(first, first + count)], checksum_tensors=False)
    header = codec.encode_trusted(Deliver, segment=parcel, parcel=parcel, count=count, live=live, attempts=attempts,
                                  ids=[], id_prefix=prefix, id_first=first, sizes=[], nframes=[],
                                  blob_crc=wire.blob_crc, frame_crcs=[], packed=True, confirmed=[],
                                  confirmed_parcels=[])
    core.on_message([_Frame(header[0]), _Frame(wire.blob)])


def test_a_compact_deliver_hands_over_the_run_of_ids_it_names():
    core = _core()
    _compact(core, 4, "p-", 9, 3, [1])  # ids p-9, p-a, p-b; every item live, first delivery for all
    entry = core.ready[-1]
    assert entry.ids == ["p-9", "p-a", "p-b"] and entry.attempts == [1, 1, 1] and entry.rows == [0, 1, 2]
    assert core.held == {"p-9": 4 << 32, "p-a": (4 << 32) | 1, "p-b": (4 << 32) | 2}
    _compact(core, 5, "p-", 9, 3, [2, 3], live=[0, 2])  # a redelivery of two of them under another parcel
    assert core.stats.duplicates_dropped == 2, "still held under parcel 4: dropped, as with ids written out"
    assert core.reject_log.counts == {}


def test_malformed_compact_delivers_are_rejected_and_counted():
    core = _core()
    _compact(core, 1, "p", 0, 2, [1])  # a prefix not ending in '-': counters would be ambiguous
    _compact(core, 2, "p%-", 0, 2, [1])
    _compact(core, 3, "p-", 2**63 - 1, 2, [1])  # counters past 2**63
    _compact(core, 4, "p-", 0, 2, [1, 1, 1])  # attempts neither one nor one per live item
    _compact(core, 5, "p-", 0, 2, [1], live=[0, 2])  # a live index past count
    assert not core.ready and not core.held and sum(core.reject_log.counts.values()) == 5


def test_an_id_twice_in_one_parcel_is_handed_over_once():
    # The broker's ingress dedup keeps this from happening in normal operation; a faulty or hostile peer's Deliver
    # must still not make the application see one item twice (exactly once is per id, not per index).
    core = _core()
    _deliver(core, 1, ["a", "b", "a"], [0, 1, 2])
    assert [entry.ids for entry in core.ready] == [["a", "b"]]
    assert core.stats.duplicates_dropped == 1
    assert core.acks == [(1 << 32) | 2]  # the repeat is acked at once
    assert core.parcels[1][1] == 2  # two items to settle


def test_settle_acks_items_of_a_parcel_still_out_at_once_and_a_finished_parcel_with_one_number():
    core = _core()
    _deliver(core, 1, ["a", "b", "c"], [0, 1, 2])
    _deliver(core, 2, ["d", "e"], [0, 1])
    core.settle([core.held.pop(i) for i in ("a", "c")])  # one parcel, not all of it: pairs, at once
    assert core.acks == [1 << 32 | 0, 1 << 32 | 2] and core.parcel_acks == [] and core.parcels[1][1] == 1
    core.settle([core.held.pop(i) for i in ("d", "b")])  # two parcels: 2 still out (a pair), 1 finished
    assert core.acks[2:] == [2 << 32 | 0] and core.parcel_acks == [1] and 1 not in core.parcels
    core.settle([core.held.pop("e")])
    assert core.parcel_acks == [1, 2] and len(core.acks) == 3 and not core.parcels
    _deliver(core, 3, ["f", "g"], [0, 1])
    core.settle([core.held.pop(i) for i in ("g", "f")])  # a whole parcel at once: one number
    assert core.parcel_acks == [1, 2, 3] and len(core.acks) == 3 and core.acked_items == 7


def _ack(core: ConsumerCore, ids: list[str], tokens: list[int] | None = None) -> list[int | None]:
    """What ZmqConsumer.ack_many does under the lock (tokens: the deliveries', default those held in the dict)."""
    tokens = [core.held[msg_id] for msg_id in ids] if tokens is None else tokens
    popped = core.pop_held(ids, [Delivery(msg_id, None, 1, token) for msg_id, token in zip(ids, tokens)])
    if None in popped:
        popped = [token for token in popped if token is not None]
        core.done.add_many(ids)
    else:
        core.remember_done(ids, popped)
    core.settle(popped)
    return popped


def test_a_whole_run_parcel_acked_at_once_is_remembered_as_one_range_and_a_redelivery_re_acked():
    core = _core()
    _compact(core, 1, "p-", 0, 3, [1])
    _compact(core, 2, "p-", 3, 2, [1])
    core.ready.clear()
    _ack(core, ["p-0", "p-1", "p-2", "p-3", "p-4"])  # two parcels in one ack
    assert not core.done.ids and all(f"p-{k}" in core.done for k in range(5)) and "p-5" not in core.done
    assert core.parcel_acks == [1, 2]
    _compact(core, 3, "p-", 0, 3, [2])  # the first run again (its ack lost on the way): re-acked, not handed over
    assert not core.ready and core.acks == [3 << 32 | 0, 3 << 32 | 1, 3 << 32 | 2]
    assert core.stats.duplicates_dropped == 3


def test_a_run_parcel_acked_in_parts_is_remembered_id_by_id():
    core = _core()
    _compact(core, 1, "p-", 0, 3, [1])
    core.ready.clear()
    _ack(core, ["p-1"])
    _ack(core, ["p-0", "p-2"])
    assert core.done.ids == {"p-0", "p-1", "p-2"} and core.parcel_acks == [1]
    _compact(core, 2, "p-", 0, 3, [2], live=[1])  # part of it again: p-1 is done
    assert not core.ready and core.acks[-1] == 2 << 32 | 1


def _run_tokens(parcel: int, count: int) -> list[int]:
    return [parcel << 32 | i for i in range(count)]


def test_a_large_run_parcel_is_held_per_parcel_and_acked_by_its_tokens_once():
    core = _core()
    _compact(core, 7, "p-", 0, 20, [1])  # 20 >= held_runs.MIN_ITEMS: no dict entry per id
    ids = [f"p-{k:x}" for k in range(20)]
    assert not core.held and core.held_runs.count == 20 and "p-13" in core.held_runs
    _deliver(core, 8, ["p-3", "q"], [0, 1])  # p-3 still held under parcel 7: dropped; q handed over
    assert core.ready[-1].ids == ["q"] and core.stats.duplicates_dropped == 1
    assert _ack(core, ids[:5], _run_tokens(7, 5)) == _run_tokens(7, 5)  # part of it: pairs, ids one by one
    assert core.acks == _run_tokens(7, 5) and {"p-0", "p-4"} <= core.done.ids and "p-0" not in core.held_runs
    assert _ack(core, ids[4:6], _run_tokens(7, 6)[4:]) == [(7 << 32) | 5], "p-4 acked twice: the first counts"
    assert _ack(core, ids[6:], _run_tokens(7, 20)[6:]) == _run_tokens(7, 20)[6:]
    assert not core.held_runs.parcels and core.held_runs.count == 0 and 7 not in core.parcels
    assert all(msg_id in core.done for msg_id in ids) and core.parcel_acks == [7]  # the rest as one number


def test_a_large_run_parcel_acked_whole_goes_as_one_number_and_its_open_items_in_heartbeats():
    core = _core()
    _compact(core, 3, "p-", 100, 16, [1])
    core._next_heartbeat = 0.0
    sent = []
    core.loop.send = sent.append  # type: ignore[method-assign]
    core.service(1.0)
    heartbeat = codec.decode(sent[-1][:1])
    assert heartbeat.held == [n for i in range(16) for n in (3, i)]
    ids = [f"p-{k:x}" for k in range(100, 116)]
    assert _ack(core, ids[::-1], _run_tokens(3, 16)[::-1]) == _run_tokens(3, 16)[::-1]  # out of order: one by one
    assert core.parcel_acks == [3] and all(msg_id in core.done for msg_id in ids) and not core.held_runs.parcels
    _compact(core, 4, "p-", 200, 16, [1])
    _ack(core, [f"p-{k:x}" for k in range(200, 216)], _run_tokens(4, 16))
    assert core.parcel_acks == [3, 4] and "p-c8" in core.done and "p-c8" not in core.done.ids  # one range


def test_a_refused_item_of_a_large_run_parcel_is_no_longer_held():
    from rollspec.transport.errors import MessageRejected, RejectReason

    core = _core()
    _compact(core, 2, "p-", 0, 16, [1])
    core.reject("p-5", 2 << 32 | 5, MessageRejected(RejectReason.MALFORMED, "bad row"))
    assert "p-5" not in core.held_runs and "p-5" in core.done and core.held_runs.count == 15
    assert core.rejects == [(2 << 32 | 5, "malformed")] and core.parcels[2][4] is None


def test_a_run_redelivered_while_still_held_per_parcel_is_not_handed_over_again():
    core = _core()
    _compact(core, 7, "p-", 0, 20, [1])
    _compact(core, 9, "p-", 10, 20, [2])  # overlaps the held run by ten ids (a lease moved while still held here)
    assert [entry.ids for entry in core.ready][1] == [f"p-{k:x}" for k in range(20, 30)]
    assert core.stats.duplicates_dropped == 10 and core.held_runs.count == 20 and core.parcels[9][2] is True
    assert {f"p-{k:x}" for k in range(20, 30)} == set(core.held), "the rest held id by id: the parcel is not whole"
