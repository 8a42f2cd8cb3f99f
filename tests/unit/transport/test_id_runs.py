"""Generated ids kept as runs: BoundedIds.add_run answers exactly as add_many of the same ids (same new indices,
same membership, same bound), and a queue's segments of generated ids travel as a run and dedup as one."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rollspec.transport.config import QueueConfig
from rollspec.transport.dedup import BoundedIds, run_counter
from rollspec.transport.lease_queue import LeaseQueue

PREFIXES = ["a-", "b-", "x-y-"]
# Look-alikes of generated ids that are not any run's: a leading zero, upper case, a sign, no digits, another dash.
ODD = ["a-0a", "a-A", "a-+1", "a-", "a-1-", "a-00", "b-0x1", "x-", "y-1", "a-1 "]


def _run(prefix: str, first: int, n: int) -> list[str]:
    return [f"{prefix}{k:x}" for k in range(first, first + n)]


ops = st.lists(st.one_of(
    st.tuples(st.just("run"), st.sampled_from(PREFIXES), st.integers(0, 40), st.integers(1, 6)),
    st.tuples(st.just("ids"), st.lists(st.one_of(st.sampled_from(ODD),
                                                 st.builds(lambda p, k: f"{p}{k:x}", st.sampled_from(PREFIXES),
                                                           st.integers(0, 48))), max_size=5)),
), max_size=25)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops, capacity=st.integers(1, 20))
def test_runs_answer_as_the_same_ids_added_one_by_one(ops, capacity):
    ranged, plain = BoundedIds(capacity), BoundedIds(capacity)
    pool = ODD + [f"{p}{k:x}" for p in PREFIXES for k in range(50)]
    for op in ops:
        if op[0] == "run":
            ids = _run(*op[1:])
            assert list(ranged.add_run(op[1], op[2], ids)) == list(plain.add_many(ids))
        else:
            assert list(ranged.add_many(op[1])) == list(plain.add_many(op[1]))
        assert len(ranged) == len(plain)
        assert [msg_id in ranged for msg_id in pool] == [msg_id in plain for msg_id in pool]


def test_a_run_is_stored_as_one_range_and_forgotten_whole():
    window = BoundedIds(9)
    assert list(window.add_run("a-", 16, _run("a-", 16, 8))) == list(range(8))
    assert not window.ids and "a-10" in window and "a-17" in window and "a-18" not in window and "a-f" not in window
    window.add_run("a-", 24, _run("a-", 24, 8))  # the first run still counts toward the capacity: kept
    assert "a-10" in window
    window.add_run("a-", 32, _run("a-", 32, 1))  # now the newest two cover it without the first: forgotten
    assert "a-10" not in window and "a-18" in window and len(window) == 9



def test_a_senders_consecutive_runs_share_one_range_that_shrinks_as_runs_are_forgotten():
    # One range per run made each forget delete the head of a list as long as the window (~16k at 1 << 20).
    window = BoundedIds(256)
    for first in range(0, 64 * 1000, 64):
        window.add_run("a-", first, _run("a-", first, 64))
    starts, stops = window._runs["a-"]
    assert len(starts) == 1 and stops[0] - starts[0] == len(window) == 256
    assert f"a-{64 * 996 - 1:x}" not in window and f"a-{64 * 996:x}" in window and f"a-{64 * 1000 - 1:x}" in window
    window.add_run("a-", 64 * 1001, _run("a-", 64 * 1001, 64))  # a gap (a lost segment): a second range
    assert len(window._runs["a-"][0]) == 2 and f"a-{64 * 1000:x}" not in window

def test_run_counter_reads_only_what_an_id_source_writes():
    assert run_counter("a-", "a-ff") == 255 and run_counter("a-", "a-0") == 0
    assert [run_counter("a-", odd) for odd in ("a-0f", "a-F", "a-", "b-1", "a-+1", "a-1_0", "a-" + "1" * 17)] \
        == [None] * 7


def test_queue_ingress_dedups_a_run_against_ids_put_one_by_one_and_the_reverse():
    q = LeaseQueue(QueueConfig(name="q", capacity=64, dedup_window=256))
    assert q.offer(["p-3"], [1], None) == 1  # an explicit id that a later run holds
    assert q.offer(_run("p-", 0, 6), [1] * 6, None, run=("p-", 0)) == 5
    assert q.offer(_run("p-", 6, 4), [1] * 4, None, run=("p-", 6)) == 4
    assert q.offer(["p-7", "p-07", "q-7"], [1] * 3, None) == 2  # p-7 is in the second run; p-07 is not an id of it
    assert q.stats.duplicates_dropped == 2
    segments = list(q._segments.values())
    assert segments[1].run is None and segments[2].run == ("p-", 6), "a run with a duplicate is not one run"


def test_fresh_runs_coalesced_into_one_parcel_keep_one_run_only_when_consecutive():
    q = LeaseQueue(QueueConfig(name="q", capacity=64, dedup_window=256))
    q.coalesce = lambda payloads: (None, sum(1 for _ in payloads))  # merge every fresh segment waiting
    q.offer(_run("p-", 0, 2), [1, 1], None, run=("p-", 0))
    q.offer(_run("p-", 2, 3), [1] * 3, None, run=("p-", 2))
    q.touch("c", 0.0, 100, 1 << 20)
    (parcel,) = q.dispatch(0.0)
    assert parcel.segment.run == ("p-", 0) and parcel.segment.ids == _run("p-", 0, 5)
    q.offer(_run("p-", 8, 2), [1, 1], None, run=("p-", 8))
    q.offer(_run("p-", 11, 2), [1, 1], None, run=("p-", 11))  # a gap: the merged ids are not one run
    (parcel,) = q.dispatch(0.0)
    assert parcel.segment.run is None and parcel.segment.ids == _run("p-", 8, 2) + _run("p-", 11, 2)


def test_a_producer_sends_a_segment_of_generated_ids_as_a_run_and_ids_written_out_as_a_list():
    from rollspec.transport import codec, segments
    from rollspec.transport.config import ProducerConfig
    from rollspec.transport.producer import ProducerCore
    from rollspec.transport.protocol import PutBatch, put_lists
    from rollspec.transport.schemas import PromptItem

    core = ProducerCore("q", ProducerConfig())
    items = [PromptItem(prompt_id="p", group_id="g", sample_index=i, token_ids=[1], policy_version=0) for i in range(3)]
    ids = _run("ab-", 30, 3)
    wire = segments.encode(items, ids, checksum_tensors=False)
    run_frames, list_frames = core._batches([(1, ids, wire, ("ab-", 30)), (4, ids, wire, None)], now=0.0)
    as_run, as_list = codec.decode(run_frames[:1]), codec.decode(list_frames[:1])
    assert type(as_run) is PutBatch and as_run.ids == [] and (as_run.id_prefix, as_run.id_first) == ("ab-", 30)
    assert as_run.sizes == [] and put_lists(as_run, len(wire.blob))[0] == ids
    assert as_list.ids == ids and as_list.id_prefix == ""


PRINTABLE = "".join(chr(c) for c in range(32, 127) if chr(c) != "%")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.text(PRINTABLE, min_size=0, max_size=6).map(lambda p: p + "-") | st.sampled_from(["p", "é-", "a\x00-",
                                                                                                  "%-", "a%x-"]),
       first=st.sampled_from([0, 9, 2**63 - 5, 2**63 - 1]), count=st.integers(1, 5))
def test_a_compact_deliver_expands_to_the_same_ids_in_c_and_in_python_or_is_refused(prefix, first, count):
    import os

    from rollspec.transport import codec
    from rollspec.transport.errors import MessageRejected
    from rollspec.transport.protocol import Deliver, deliver_lists

    header = codec.encode_trusted(Deliver, segment=0, parcel=0, count=count, live=[], attempts=[1], ids=[],
                                  id_prefix=prefix, id_first=first, sizes=[], nframes=[], blob_crc=0, frame_crcs=[],
                                  packed=True, confirmed=[], confirmed_parcels=[])
    try:
        msg = codec.decode(header)
    except MessageRejected:
        assert not (prefix.isascii() and "\x00" not in prefix and "%" not in prefix and prefix.endswith("-")) \
            or first + count > 2**63
        return
    expanded, before = [], os.environ.get("ROLLSPEC_TRANSPORT_NATIVE")
    try:
        for path in ("1", "0"):  # the C extension's hex_ids, then the Python one
            os.environ["ROLLSPEC_TRANSPORT_NATIVE"] = path
            expanded.append(deliver_lists(msg, count).ids)
    finally:
        os.environ.pop("ROLLSPEC_TRANSPORT_NATIVE") if before is None else os.environ.update(
            ROLLSPEC_TRANSPORT_NATIVE=before)
    assert expanded[0] == expanded[1] == _run(prefix, first, count)
    assert all(run_counter(prefix, msg_id) == k for k, msg_id in enumerate(expanded[0], first))


def test_held_runs_take_a_parcels_slice_only_when_each_index_comes_once_and_unacked():
    from rollspec.transport.held_runs import HeldRuns

    runs = HeldRuns()
    runs.add(5, "p-", 32, 6)  # ids p-20 .. p-25
    t = [5 << 32 | i for i in range(6)]
    assert runs.overlaps("p-", 37, 40) and not runs.overlaps("p-", 38, 40) and not runs.overlaps("q-", 32, 33)
    assert not runs.take([t[1], t[1], t[3]], 0, 3), "an index twice (one delivery acked twice in one call)"
    assert not runs.take([t[2], t[1]], 0, 2) and not runs.take([t[0], 6 << 32 | 1], 0, 2)
    assert runs.count == 6 and runs.take(t, 1, 3) and runs.count == 4 and "p-21" not in runs and "p-20" in runs
    assert not runs.take(t, 0, 2), "p-21 acked before"
    assert runs.take_one(t[0]) and not runs.take_one(t[0]) and runs.take(t, 3, 6)
    assert not runs.parcels and runs.count == 0 and not runs.overlaps("p-", 32, 38)
