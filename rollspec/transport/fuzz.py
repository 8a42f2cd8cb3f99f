"""A seeded, mutation-based fuzzer for everything that parses inbound frames: the codec and the
on_message handlers of the broker, producer, consumer, weight publisher and subscribers.

    report = run_fuzz(cases=100_000, seed=0)
    assert not report.crashes

Every case starts from a valid message of some protocol type and damages it the way an attacker
(who can compute a CRC) or a broken peer would: flipped bits, truncation, extra / missing / repeated
frames, msgpack values of the wrong type or absurd size, declared lengths far beyond the data,
bogus tensor descriptors, plain noise. A crash is any exception escaping a handler (which would stop
an endpoint's I/O thread), or anything but MessageRejected escaping decode(). Used by the fuzz tests
and bench/security.py; not imported by the data path.
"""

import random
import struct
import time
import tracemalloc
from dataclasses import dataclass, field
from typing import Any, Callable, cast

import msgpack
import torch
import zmq

from rollspec.transport import codec, segments
from rollspec.transport.broker_core import BrokerCore
from rollspec.transport.checksum import crc32
from rollspec.transport.config import BroadcastConfig, ConsumerConfig, ProducerConfig, QueueConfig
from rollspec.transport.consumer_core import ConsumerCore
from rollspec.transport.errors import MessageRejected
from rollspec.transport.keys import RunKeys
from rollspec.transport.producer import ProducerCore
from rollspec.transport.protocol import Ack, AckConfirm, Deliver, Detach, Heartbeat, PutAck, PutBatch
from rollspec.transport.schemas import ChunkRequest, PromptItem, Trajectory, WeightChunk, WeightQuery
from rollspec.transport.security import SecurityConfig
from rollspec.transport.segments import WireItem, pack
from rollspec.transport.weight_auth import chunk_digests, sign_manifest
from rollspec.transport.weight_layout import pack_weights
from rollspec.transport.weight_publisher import PublisherCore, _Served
from rollspec.transport.weight_subscriber import SubscriberCore

Frames = list[bytes]
NASTY: tuple[Any, ...] = (
    None, True, -1, 0, 2**63, -2**63, 2**64 - 1, 1e308, float("nan"), float("-inf"), "", "x" * 70_000, b"",
    b"\0" * 4096, [], {}, [[[[[]]]]], {"a": 1}, [0] * 5000, msgpack.ExtType(1, b"\0" * 3),
    msgpack.ExtType(1, struct.pack("<IBB", 0, 7, 1) + struct.pack("<q", 2**62)), msgpack.ExtType(99, b"x"),
)
# msgpack headers promising far more than follows: str32, bin32, array32, map32, ext32 of ~4G.
LIARS = (b"\xdb\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff", b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff",
         b"\xc9\xff\xff\xff\xff\x01", b"\x93" + b"\x91" * 100_000)
FUZZ_BROADCAST = BroadcastConfig(chunk_bytes=256, max_version_bytes=64 << 20)


class _Outbox:
    """Stands in for an endpoint's IoLoop: handlers send replies into it and wake it."""

    def __init__(self) -> None:
        self.sent = 0

    def send(self, frames: list[Any]) -> None:
        self.sent += 1

    def wake(self) -> None:
        pass


def _with_crc(body: bytes) -> bytes:
    return struct.pack("<I", crc32(body)) + body


def _segment(ids: list[str], header: type) -> Frames:
    items = [codec.encode_body(PromptItem(prompt_id=i, group_id="g", sample_index=0, token_ids=[1, 2],
                                          policy_version=0)) for i in ids]
    wire = pack([WireItem(i, body, frames, len(body)) for i, (body, frames) in zip(ids, items)], False)
    return _framed(ids, wire, header, packed=False, segment=3, parcel=5)


def _packed(ids: list[str], header: type) -> Frames:
    """A packed segment (one body holding every item's row) of prompts with these ids."""
    items = [PromptItem(prompt_id=i, group_id="g", sample_index=0, token_ids=[1, 2], policy_version=0) for i in ids]
    wire = segments.encode(items, ids, False)
    return _framed(ids, wire, header, packed=True, segment=4, parcel=6)


def _framed(ids: list[str], wire: Any, header: type, *, packed: bool, segment: int, parcel: int) -> Frames:
    """`wire` under a PutBatch (producer -> broker) or Deliver (broker -> consumer) header, as frames."""
    if header is PutBatch:
        msg: Any = PutBatch(queue="q", window=8, seqs=list(range(1, len(ids) + 1)), ids=ids, id_prefix="", id_first=0,
                            sizes=[] if packed else wire.sizes, nframes=[] if packed else wire.nframes,
                            blob_crc=wire.blob_crc, frame_crcs=[], packed=packed)
    else:
        msg = Deliver(segment=segment, parcel=parcel, count=len(ids), live=list(range(len(ids))),
                      attempts=[1] * len(ids), ids=ids, id_prefix="", id_first=0, sizes=[] if packed else wire.sizes,
                      nframes=[] if packed else wire.nframes, blob_crc=wire.blob_crc, frame_crcs=[], packed=packed,
                      confirmed=[], confirmed_parcels=[])
    return [*map(bytes, codec.encode(msg)), wire.blob]


def seed_messages(keys: RunKeys) -> dict[str, list[Frames]]:
    """Valid messages per handler (ROUTER identities are added by the targets)."""
    weights = {"w": torch.arange(300, dtype=torch.float32), "b": torch.ones(5, dtype=torch.bfloat16)}
    manifest, flat = pack_weights(7, weights, FUZZ_BROADCAST.chunk_bytes)
    signed = sign_manifest(manifest, chunk_digests(flat, FUZZ_BROADCAST.chunk_bytes), run_id=keys.run_id,
                           key=keys.weights_key)
    chunk = WeightChunk(version=7, index=0, crc=manifest.chunk_crcs[0], data=flat[:256].clone())
    trajectory = Trajectory(prompt_id="p", group_id="g", sample_index=0, prompt_token_ids=[1], token_ids=[2, 3],
                            logprobs=torch.tensor([-0.5, -1.0]), policy_version=1, draft_version=0,
                            accepted_per_position=[1], proposed_per_position=[2], finish_reason="stop")

    def enc(msg: Any) -> Frames:
        return [bytes(f) for f in codec.encode(msg)]

    return {
        "broker": [enc(Heartbeat(queue="q", role="consumer", window_items=4, window_bytes=1 << 20, held=[3, 0],
                                 acked=[3, 1], parcels=[2])),
                   enc(Heartbeat(queue="q", role="producer", window_items=4, window_bytes=1 << 20, held=[], acked=[],
                                 parcels=[])),
                   _segment(["a", "b", "c"], PutBatch), _packed(["d", "e"], PutBatch),
                   enc(Ack(queue="q", parcels=[0], acked=[0, 0], rejected=[0, 1], reasons=["malformed"])),
                   enc(Detach(queue="q", role="consumer"))],
        "consumer": [_segment(["a", "b"], Deliver), _packed(["c", "d"], Deliver),
                     enc(AckConfirm(pairs=[3, 0], parcels=[5]))],
        "producer": [enc(PutAck(seqs=[1, 2], granted=9))],
        "publisher": [enc(WeightQuery(has_version=True, version=1)), enc(ChunkRequest(version=7, indices=[0, 1]))],
        "subscriber": [enc(signed), enc(manifest), enc(chunk)],
        "decode": [enc(trajectory), enc(signed), enc(chunk)],
    }


class Mutator:
    """Damages frames; every strategy is equally likely."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.strategies: list[Callable[[Frames], Frames]] = [
            self._flip, self._flip_body, self._truncate, self._extend, self._frames, self._value, self._value,
            self._liar, self._noise, self._tensor,
        ]

    def mutate(self, frames: Frames) -> Frames:
        out = list(frames)
        for _ in range(self.rng.choice((1, 1, 1, 2, 3))):
            out = self.rng.choice(self.strategies)(out)
        return out or [b""]  # zmq never delivers a message of zero frames

    def _pick(self, frames: Frames) -> int:
        return self.rng.randrange(len(frames)) if frames else 0

    def _flip(self, frames: Frames) -> Frames:  # line noise: the CRC should catch it
        if not frames or not frames[0]:
            return frames
        i, data = self._pick(frames), bytearray(frames[self._pick(frames)] or b"\0")
        data[self.rng.randrange(len(data))] ^= 1 << self.rng.randrange(8)
        return [*frames[:i], bytes(data), *frames[i + 1:]]

    def _flip_body(self, frames: Frames) -> Frames:  # an attacker: damage, then fix the CRC
        if not frames or len(frames[0]) < 5:
            return frames
        body = bytearray(frames[0][4:])
        for _ in range(self.rng.randint(1, 4)):
            body[self.rng.randrange(len(body))] = self.rng.randrange(256)
        return [_with_crc(bytes(body)), *frames[1:]]

    def _truncate(self, frames: Frames) -> Frames:
        i = self._pick(frames)
        return [*frames[:i], frames[i][:self.rng.randrange(len(frames[i]) + 1)], *frames[i + 1:]] if frames else []

    def _extend(self, frames: Frames) -> Frames:
        i = self._pick(frames)
        tail = self.rng.randbytes(self.rng.choice((1, 7, 64, 4096)))
        return [*frames[:i], frames[i] + tail, *frames[i + 1:]] if frames else [tail]

    def _frames(self, frames: Frames) -> Frames:
        op, i = self.rng.randrange(4), self._pick(frames)
        if op == 0 and frames:
            return frames[:i] + frames[i + 1:]
        if op == 1 and frames:
            return frames[:i] + [frames[i]] * self.rng.randint(2, 40) + frames[i + 1:]
        if op == 2:
            return frames + [self.rng.randbytes(self.rng.choice((0, 8, 256)))]
        return list(reversed(frames))

    def _value(self, frames: Frames) -> Frames:  # valid msgpack, valid CRC, wrong values
        try:
            body = msgpack.unpackb(frames[0][4:], raw=False, strict_map_key=False,
                                   ext_hook=lambda code, data: msgpack.ExtType(code, data))
        except Exception:  # already not msgpack: nothing structured to mutate
            return frames
        body = self._replace(body, depth=0)
        return [_with_crc(msgpack.packb(body)), *frames[1:]]

    def _replace(self, node: Any, depth: int) -> Any:
        if isinstance(node, list) and node and depth < 4 and self.rng.random() < 0.75:
            i = self.rng.randrange(len(node))
            return node[:i] + [self._replace(node[i], depth + 1)] + node[i + 1:]
        return self.rng.choice(NASTY)

    def _liar(self, frames: Frames) -> Frames:
        return [_with_crc(self.rng.choice(LIARS)), *frames[1:]]

    def _noise(self, frames: Frames) -> Frames:
        return [self.rng.randbytes(self.rng.choice((0, 3, 4, 5, 40, 1000))) for _ in range(self.rng.randint(1, 3))]

    def _tensor(self, frames: Frames) -> Frames:  # a tensor descriptor pointing anywhere, of any size
        head = struct.pack("<IBB", self.rng.choice((0, 1, 2**32 - 1)), self.rng.randrange(12), self.rng.randrange(10))
        dims = b"".join(struct.pack("<q", self.rng.choice((0, 1, -1, 2**31, 2**62))) for _ in range(head[-1]))
        body = msgpack.packb(["rs.weight_chunk", 1, [7, 0, 0, msgpack.ExtType(1, head + dims)]])
        payload = self.rng.choice((b"", b"\0" * 8, *frames[1:2]))  # empty: matches any shape with a 0 dim
        return [_with_crc(body), payload, *frames[2:]]


@dataclass
class FuzzReport:
    """Outcome of a fuzz run: every case counts, every crash is kept (target, error, first frame)."""

    cases: int = 0
    rejected: int = 0
    crashes: list[tuple[str, str, str]] = field(default_factory=list)
    per_target: dict[str, int] = field(default_factory=dict)
    max_traced_alloc_bytes: int = 0
    max_input_bytes: int = 0
    seconds: float = 0.0


class _Targets:
    """Real handler cores wired to outboxes; rebuilt now and then so state (versions, leases) resets."""

    def __init__(self, keys: RunKeys):
        self.keys = keys
        self.build()

    def build(self) -> None:
        self.broker = BrokerCore([QueueConfig(name="q")], ProducerConfig().limits)
        self.consumer = ConsumerCore("q", ConsumerConfig())
        self.producer = ProducerCore("q", ProducerConfig())
        self.publisher = PublisherCore(FUZZ_BROADCAST)
        manifest, flat = pack_weights(7, {"w": torch.zeros(100)}, FUZZ_BROADCAST.chunk_bytes)
        self.publisher.served = _Served(manifest, flat)
        signed = SecurityConfig(keys=self.keys.for_role("rollout"))
        self.subscribers = [SubscriberCore(FUZZ_BROADCAST, signed), SubscriberCore(FUZZ_BROADCAST, SecurityConfig())]
        cores: list[Any] = [self.broker, self.consumer, self.producer, self.publisher, *self.subscribers]
        for core in cores:
            core.loop = cast(Any, _Outbox())

    def feed(self, target: str, frames: Frames) -> bool:
        """Run one case; True if it was refused. Raises only on a crash."""
        if target == "decode":
            try:
                codec.decode(frames)
            except MessageRejected:
                return True
            return False
        zframes = [zmq.Frame(f) for f in frames]
        if target == "broker":
            self.broker.on_message([zmq.Frame(b"peer"), *zframes])
        elif target == "consumer":
            self.consumer.on_message(zframes)
        elif target == "producer":
            self.producer.on_message(zframes)
        elif target == "publisher":
            self.publisher.on_message([zmq.Frame(b"peer"), *zframes])
        else:
            for subscriber in self.subscribers:
                subscriber.on_message(zframes)
        return False


def run_fuzz(cases: int, seed: int = 0, *, trace_every: int = 0) -> FuzzReport:
    """Run `cases` malformed messages through every target; with trace_every=n, every n-th case runs
    under tracemalloc and the largest traced peak (Python-level allocation for one case) is kept."""
    rng = random.Random(seed)
    keys = RunKeys.create()
    seeds = seed_messages(keys)
    targets, mutator, report = _Targets(keys), Mutator(rng), FuzzReport()
    names = sorted(seeds)
    start = time.monotonic()
    for n in range(cases):
        if n % 2000 == 1999:
            targets.build()
        target = names[n % len(names)]
        frames = mutator.mutate(rng.choice(seeds[target]))
        traced = trace_every and n % trace_every == 0
        if traced:
            tracemalloc.start()
        try:
            report.rejected += targets.feed(target, frames)
        except Exception as exc:  # the whole point: record it instead of stopping
            report.crashes.append((target, f"{type(exc).__name__}: {exc}"[:300], frames[0][:64].hex() if frames else ""))
        finally:
            if traced:
                report.max_traced_alloc_bytes = max(report.max_traced_alloc_bytes, tracemalloc.get_traced_memory()[1])
                tracemalloc.stop()
        report.max_input_bytes = max(report.max_input_bytes, sum(map(len, frames)))
        report.per_target[target] = report.per_target.get(target, 0) + 1
        report.cases += 1
    report.seconds = time.monotonic() - start
    return report
