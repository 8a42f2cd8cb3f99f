"""Segments at a real consumer endpoint: a test-driven ROUTER socket plays the broker and sends Deliver
messages by hand, so partial leases, redeliveries of partly processed segments, parcel acks and
undecodable rows can be staged exactly. Dedup must work item by item inside a segment: a consumer
that deduped per segment would either drop the rest of a partly leased segment or run its finished
items again, and these tests would fail."""

import gc
import sys
import time
import zlib
from pathlib import Path

import msgpack
import pytest
import zmq

from rollspec.transport import codec, segments
from rollspec.transport.config import ConsumerConfig
from rollspec.transport.consumer import ZmqConsumer
from rollspec.transport.protocol import Ack, Deliver, Heartbeat
from rollspec.transport.schemas import PromptItem

sys.path.insert(0, str(Path(__file__).parent))
import raw_peers  # noqa: E402


class FakeBroker:
    """A ROUTER socket the test drives: sends deliveries to the one consumer, collects what it sends."""

    def __init__(self, tmp_path):
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.bind(f"ipc://{tmp_path}/fake-broker.sock")
        self.address = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.identity: bytes | None = None
        self.parcels: list[int] = []      # parcel acks, in arrival order (first sends and resends)
        self.pairs: set[tuple[int, int]] = set()
        self.rejected: dict[tuple[int, int], str] = {}

    def deliver(self, segment: int, parcel: int, ids: list[str], blob: bytes, live: list[int], attempt: int = 1,
                confirmed_parcels: tuple[int, ...] = ()):
        msg = Deliver(segment=segment, parcel=parcel, count=len(ids), live=live, attempts=[attempt] * len(live),
                      ids=ids, id_prefix="", id_first=0, sizes=[], nframes=[], blob_crc=zlib.crc32(blob), frame_crcs=[],
                      packed=True, confirmed=[], confirmed_parcels=list(confirmed_parcels))
        self.socket.send_multipart([self.identity, *codec.encode(msg), blob])

    def pump(self, seconds: float) -> None:
        """Read everything the consumer sends for `seconds` (heartbeats every 50 ms resend open acks)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self.socket.poll(20):
                continue
            identity, *frames = self.socket.recv_multipart()
            self.identity = identity
            msg = codec.decode(frames)
            if type(msg) is Ack:
                self.parcels += msg.parcels
                self.pairs |= set(zip(msg.acked[::2], msg.acked[1::2]))
                for k, reason in enumerate(msg.reasons):
                    self.rejected[(msg.rejected[2 * k], msg.rejected[2 * k + 1])] = reason
            elif type(msg) is Heartbeat:
                self.parcels += msg.parcels
                self.pairs |= set(zip(msg.acked[::2], msg.acked[1::2]))

    def close(self) -> None:
        self.socket.close(linger=0)
        self.context.term()


@pytest.fixture
def fake(tmp_path):
    broker = FakeBroker(tmp_path)
    consumer = ZmqConsumer(broker.address, "q", config=ConsumerConfig(heartbeat_s=0.05))
    broker.pump(0.3)  # its first heartbeat tells us its identity
    assert broker.identity is not None
    yield broker, consumer
    consumer.close(timeout_s=0.2)
    broker.close()


def _take(consumer: ZmqConsumer, wait_s: float = 0.5) -> list:
    out, deadline = [], time.monotonic() + wait_s
    while time.monotonic() < deadline:
        out += consumer.get_batch(64, timeout_s=0.05)
    return out


def test_partly_processed_segment_redelivered_gives_the_application_only_unprocessed_items(fake):
    broker, consumer = fake
    ids = ["a", "b", "c", "d"]
    blob = codec.encode_rows([raw_peers.prompt(i) for i in ids])
    seen: list[str] = []

    broker.deliver(7, parcel=1, ids=ids, blob=blob, live=[0, 1])  # a window of 2: half the segment
    first = _take(consumer)
    seen += [d.msg_id for d in first]
    consumer.ack(first[0])                   # a alone: its parcel is still open -> a pair ack
    broker.pump(0.2)
    assert (7, 0) in broker.pairs and 1 not in broker.parcels
    consumer.ack(first[1])                   # b finishes parcel 1 -> one parcel ack
    broker.pump(0.2)
    assert 1 in broker.parcels

    broker.deliver(7, parcel=2, ids=ids, blob=blob, live=[2, 3])  # the rest of the same segment
    second = _take(consumer)
    seen += [d.msg_id for d in second]
    assert [d.item for d in second] == [raw_peers.prompt("c"), raw_peers.prompt("d")]

    broker.deliver(7, parcel=3, ids=ids, blob=blob, live=[0, 1, 2, 3], attempt=2)  # the whole segment again
    assert _take(consumer) == []             # a, b done (acked again), c, d still being processed here
    broker.pump(0.2)
    assert {(7, 0), (7, 1)} <= broker.pairs

    consumer.ack_many(second)
    broker.deliver(7, parcel=4, ids=ids, blob=blob, live=[0, 1, 2, 3], attempt=3)
    assert _take(consumer) == []
    broker.pump(0.3)

    assert seen == ids, "each item of the segment reaches the application exactly once"
    assert 2 in broker.parcels and 3 not in broker.parcels and 4 not in broker.parcels
    assert {(7, 2), (7, 3)} <= broker.pairs  # parcel 4's items, all done: acked again item by item
    assert consumer.stats().duplicates_dropped == 8 and consumer.stats().held == 0


def test_an_undecodable_row_is_rejected_alone_and_its_parcel_is_acked_item_by_item(fake):
    broker, consumer = fake
    rows = [["p0", "g", 0, [1], 0], ["p1", "g", -1, [1], 0], ["p2", "g", 2, [1], 0]]  # row 1: sample_index < 0
    blob = msgpack.packb(["prompt", 1, rows])
    broker.deliver(9, parcel=5, ids=["x0", "x1", "x2"], blob=blob, live=[0, 1, 2])
    got = _take(consumer)
    assert [(d.msg_id, d.item.sample_index) for d in got] == [("x0", 0), ("x2", 2)]
    consumer.ack_many(got)
    broker.pump(0.3)
    assert broker.rejected == {(9, 1): "invalid_field"}
    assert {(9, 0), (9, 2)} <= broker.pairs and 5 not in broker.parcels
    assert consumer.stats().rejected == {"invalid_field": 1}


def test_a_damaged_segment_is_not_delivered_and_not_acked(fake):
    broker, consumer = fake
    blob = bytearray(codec.encode_rows([raw_peers.prompt("a"), raw_peers.prompt("b")]))
    good_crc = zlib.crc32(blob)
    blob[-1] ^= 0x01
    msg = Deliver(segment=3, parcel=1, count=2, live=[0, 1], attempts=[1, 1], ids=["a", "b"], id_prefix="", id_first=0,
                  sizes=[], nframes=[], blob_crc=good_crc, frame_crcs=[], packed=True, confirmed=[],
                  confirmed_parcels=[])
    broker.socket.send_multipart([broker.identity, *codec.encode(msg), bytes(blob)])
    assert _take(consumer) == []
    broker.pump(0.2)
    assert not broker.pairs and not broker.parcels and consumer.stats().rejected == {"checksum": 1}


def test_segments_are_cut_by_count_packed_when_they_can_be_and_cut_again_keeps_ids():
    items = [raw_peers.prompt(f"p{i}", i) for i in range(10)]
    ids = [f"id{i}" for i in range(10)]
    out = segments.encode_chunks(items, ids, 4, 1 << 20, False)
    assert [s.ids for s in out] == [ids[:4], ids[4:8], ids[8:]] and all(s.wire.packed for s in out)
    assert codec.decode_rows(out[1].wire.blob, 4) == items[4:8]
    assert sum(out[0].wire.sizes) == len(out[0].wire.blob)
    head, tail = segments.cut(out[0], 1, False)
    assert (head.ids, tail.ids) == (ids[:1], ids[1:4])
    assert codec.decode_rows(tail.wire.blob, 3) == items[1:4]
    mixed = segments.encode_chunks([items[0], Heartbeat(queue="q", role="producer", window_items=1, window_bytes=1,
                                                         held=[], acked=[], parcels=[])], ["m0", "m1"], 4, 1 << 20,
                                   False)
    assert len(mixed) == 1 and not mixed[0].wire.packed and mixed[0].wire.sizes[0] > 0


def test_packed_segments_are_also_capped_in_bytes():
    items = [PromptItem(prompt_id=f"p{i}", group_id="g", sample_index=i, token_ids=list(range(1000)),
                        policy_version=0) for i in range(16)]
    out = segments.encode_chunks(items, [f"id{i}" for i in range(16)], 256, 8000, False)
    assert [len(s.ids) for s in out] == [2] * 8 and all(len(s.wire.blob) <= 8000 for s in out)
    assert [item for s in out for item in codec.decode_rows(s.wire.blob, len(s.ids))] == items


def test_a_confirmation_carried_by_a_delivery_stops_the_ack_resends(fake):
    broker, consumer = fake
    blob = codec.encode_rows([raw_peers.prompt("a")])
    broker.deliver(4, parcel=1, ids=["a"], blob=blob, live=[0])
    consumer.ack_many(_take(consumer, 0.2))
    broker.pump(0.2)
    resent = broker.parcels.count(1)
    assert resent >= 2, "unconfirmed: the parcel ack goes again in each heartbeat"
    broker.deliver(4, parcel=2, ids=["b"], blob=codec.encode_rows([raw_peers.prompt("b")]), live=[0], confirmed_parcels=(1,))
    assert [d.msg_id for d in _take(consumer, 0.2)] == ["b"]
    before = broker.parcels.count(1)
    broker.pump(0.3)
    assert broker.parcels.count(1) == before, "confirmed on the delivery: no more resends"


def test_deliveries_are_not_tracked_by_the_cyclic_collector(fake):
    """One Delivery per item, held by the application for a while: tracked, they were promoted to the oldest
    generation and set off full collections of the whole process (~1.5 us of CPU per 1 KB item)."""
    broker, consumer = fake
    ids = ["a", "b", "c"]
    broker.deliver(4, parcel=1, ids=ids, blob=codec.encode_rows([raw_peers.prompt(i) for i in ids]), live=[0, 1, 2])
    got = _take(consumer)
    assert [d.msg_id for d in got] == ids and got[0].item == raw_peers.prompt("a") and got[0].attempt == 1
    assert not any(gc.is_tracked(d) for d in got)
    consumer.ack_many(got)
    broker.pump(0.2)
    assert 1 in broker.parcels
