"""The consumer's protocol engine, run on its I/O thread: accepts deliveries, drops duplicates by
message id, sends acks (resending them in heartbeats until confirmed) and reports what it holds."""

import itertools
import logging
import threading
from collections import deque
from typing import Any, Iterable

import zmq

from rollspec.transport import codec, segments
from rollspec.transport.channel import make_token
from rollspec.transport.config import ConsumerConfig
from rollspec.transport.errors import MessageRejected, RejectReason
from rollspec.transport.io_loop import IoLoop
from rollspec.transport.protocol import Ack, AckConfirm, Deliver, Detach, Heartbeat
from rollspec.transport.stats import ConsumerStats, RejectCounter

log = logging.getLogger(__name__)


def _pairs(tokens: Iterable[int]) -> list[int]:
    """Tokens flattened to the wire's (segment, index) pairs (split_token inlined: one call per ack batch)."""
    return [n for token in tokens for n in (token >> 32, token & 0xFFFFFFFF)]


# A received, not yet decoded item: (msg_id, token, attempt, body, frames), token = segment << 32 | index.
# Decoding happens on the application thread, in get(). Small bodies are copied out as bytes and tokens
# are ints so that, for the common item without tensors, this tuple holds no GC-tracked object: the
# cyclic collector otherwise costs more per item than the rest of the receive path.
RawItem = tuple[str, int, int, bytes | memoryview, tuple[Any, ...]]
_COPY_BODIES_UP_TO = 4 << 20


class BoundedIds:
    """The last `capacity` ids added, for duplicate detection with bounded memory."""

    def __init__(self, capacity: int) -> None:
        self.ids: set[str] = set()
        """Read-only for callers (membership tests on the hot path skip a method call)."""
        self._order: deque[str] = deque()
        self._capacity = capacity

    def add(self, msg_id: str) -> None:
        """Remember msg_id, forgetting the oldest id beyond capacity."""
        if msg_id not in self.ids:
            self.ids.add(msg_id)
            self._order.append(msg_id)
            if len(self._order) > self._capacity:
                self.ids.discard(self._order.popleft())

    def add_many(self, msg_ids: list[str]) -> None:
        """add() each id, with the set and deque updated in bulk (ack_many's hot path)."""
        fresh = [msg_id for msg_id in msg_ids if msg_id not in self.ids]
        self.ids.update(fresh)
        self._order.extend(fresh)
        while len(self._order) > self._capacity:
            self.ids.discard(self._order.popleft())

    def __contains__(self, msg_id: str) -> bool:
        return msg_id in self.ids


class ConsumerCore:
    """IoHandler of a consumer. Everything below `cond` is shared with the application thread."""

    loop: IoLoop  # set by the endpoint right after the loop is built (the loop needs this handler first)

    def __init__(self, queue: str, config: ConsumerConfig) -> None:
        self.queue = queue
        self.config = config
        self.cond = threading.Condition()
        self.ready: deque[RawItem] = deque()
        self.held: dict[str, int] = {}                   # delivered (or ready) and not yet acked -> token
        self.done = BoundedIds(config.dedup_window)      # acked ids: a redelivery is re-acked, not re-run
        self.acks: list[int] = []                         # tokens to send
        self.rejects: list[tuple[int, str]] = []
        self.unconfirmed: dict[int, None] = {}
        self.stats = ConsumerStats()
        self.reject_log = RejectCounter(f"consumer:{queue}")
        self.waiters = 0
        self._next_heartbeat = 0.0

    def on_message(self, frames: list[zmq.Frame]) -> None:
        try:
            msg = codec.decode([frames[0].buffer], limits=self.config.limits)
            if type(msg) is Deliver:
                self._on_deliver(msg, frames[1:])
            elif type(msg) is AckConfirm:
                pairs = msg.pairs
                with self.cond:
                    pop = self.unconfirmed.pop
                    for k in range(0, len(pairs), 2):
                        pop(pairs[k] << 32 | pairs[k + 1], None)  # make_token, inlined
            else:
                raise MessageRejected(RejectReason.UNEXPECTED, f"{type(msg).__name__} sent to a consumer")
        except MessageRejected as exc:
            # A damaged delivery is not acked: the broker sees it missing from our heartbeat and resends.
            with self.cond:
                self.reject_log.record(exc, log)

    def service(self, now: float) -> float:
        with self.cond:
            acked, self.acks = self.acks, []
            rejected, self.rejects = self.rejects, []
            self.unconfirmed.update(dict.fromkeys(acked))
            self.unconfirmed.update(dict.fromkeys(token for token, _ in rejected))
            heartbeat = now >= self._next_heartbeat
            if heartbeat:
                held = _pairs(self.held.values())
                resend = _pairs(self.unconfirmed)
        if acked or rejected:
            self.loop.send(codec.encode(Ack(queue=self.queue, acked=_pairs(acked),
                                            rejected=_pairs(token for token, _ in rejected),
                                            reasons=[reason for _, reason in rejected])))
        if heartbeat:
            self._next_heartbeat = now + self.config.heartbeat_s
            self.loop.send(codec.encode(Heartbeat(
                queue=self.queue, role="consumer", window_items=self.config.window_items,
                window_bytes=self.config.window_bytes, held=held, acked=resend)))
        return self._next_heartbeat

    def on_stop(self) -> None:
        self.loop.send(codec.encode(Detach(queue=self.queue, role="consumer")))

    def _on_deliver(self, msg: Deliver, payload: list[zmq.Frame]) -> None:
        if not payload:
            raise MessageRejected(RejectReason.MALFORMED, "delivery without a body blob")
        wire = segments.receive(payload[0].buffer, [f.buffer for f in payload[1:]], blob_crc=msg.blob_crc,
                                sizes=msg.sizes, nframes=msg.nframes, live=msg.live, frame_crcs=msg.frame_crcs)
        offsets = [0, *itertools.accumulate(msg.sizes)]
        blob = payload[0].bytes if offsets[-1] <= _COPY_BODIES_UP_TO else wire.blob
        frames, first_frame, nframes = wire.frames, wire.first_frame, msg.nframes
        ids, segment = msg.ids, msg.segment
        with self.cond:
            done, held, ready = self.done.ids, self.held, self.ready
            self.stats.received += len(msg.live)
            live_ids = [ids[i] for i in msg.live]
            unique = set(live_ids)
            if len(unique) == len(live_ids) and done.isdisjoint(unique) and held.keys().isdisjoint(unique):
                # The common case (nothing seen before), in bulk: same effect as the loop below.
                tokens = [segment << 32 | i for i in msg.live]
                held.update(zip(live_ids, tokens))
                ready.extend([(msg_id, token, attempt, blob[offsets[i]:offsets[i + 1]],
                               tuple(frames[first_frame[i]:first_frame[i] + nframes[i]]) if nframes[i] else ())
                              for msg_id, token, attempt, i in zip(live_ids, tokens, msg.attempts, msg.live)])
                self.stats.redelivered += sum([attempt > 1 for attempt in msg.attempts])
                if self.waiters:
                    self.cond.notify_all()
                return
            for i, attempt in zip(msg.live, msg.attempts):
                msg_id = ids[i]
                if msg_id in done:
                    self.acks.append(make_token(segment, i))
                    self.stats.duplicates_dropped += 1
                elif msg_id in held:
                    self.stats.duplicates_dropped += 1
                else:
                    token = held[msg_id] = segment << 32 | i
                    item_frames = tuple(frames[first_frame[i]:first_frame[i] + nframes[i]]) if nframes[i] else ()
                    ready.append((msg_id, token, attempt, blob[offsets[i]:offsets[i + 1]], item_frames))
                    if attempt > 1:
                        self.stats.redelivered += 1
            if self.waiters:
                self.cond.notify_all()
