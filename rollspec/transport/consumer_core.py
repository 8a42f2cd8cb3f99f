"""The consumer's protocol engine, run on its I/O thread: accepts deliveries, drops duplicates by
message id, sends acks (resending them in heartbeats until confirmed) and reports what it holds."""

import logging
import threading
from collections import deque
from dataclasses import dataclass

import zmq

from rollspec.transport import codec, segments
from rollspec.transport.config import ConsumerConfig
from rollspec.transport.errors import MessageRejected, RejectReason
from rollspec.transport.io_loop import IoLoop
from rollspec.transport.protocol import Ack, AckConfirm, Deliver, Detach, Heartbeat
from rollspec.transport.stats import ConsumerStats, RejectCounter

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RawItem:
    """A received, not yet decoded item (decoding happens on the application thread, in get())."""

    msg_id: str
    token: tuple[int, int]
    attempt: int
    body: memoryview
    frames: list


class BoundedIds:
    """The last `capacity` ids added, for duplicate detection with bounded memory."""

    def __init__(self, capacity: int):
        self._ids: set[str] = set()
        self._order: deque[str] = deque()
        self._capacity = capacity

    def add(self, msg_id: str) -> None:
        if msg_id not in self._ids:
            self._ids.add(msg_id)
            self._order.append(msg_id)
            if len(self._order) > self._capacity:
                self._ids.discard(self._order.popleft())

    def __contains__(self, msg_id: str) -> bool:
        return msg_id in self._ids


class ConsumerCore:
    """IoHandler of a consumer. Everything below `cond` is shared with the application thread."""

    def __init__(self, queue: str, config: ConsumerConfig):
        self.queue = queue
        self.config = config
        self.cond = threading.Condition()
        self.loop: IoLoop | None = None
        self.ready: deque[RawItem] = deque()
        self.held: dict[str, tuple[int, int]] = {}     # delivered (or ready) and not yet acked
        self.done = BoundedIds(config.dedup_window)      # acked ids: a redelivery is re-acked, not re-run
        self.acks: list[int] = []                         # flat pairs to send
        self.rejects: list[tuple[int, int, str]] = []
        self.unconfirmed: dict[tuple[int, int], None] = {}
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
                with self.cond:
                    for k in range(0, len(msg.pairs), 2):
                        self.unconfirmed.pop((msg.pairs[k], msg.pairs[k + 1]), None)
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
            for k in range(0, len(acked), 2):
                self.unconfirmed[(acked[k], acked[k + 1])] = None
            for seg, idx, _ in rejected:
                self.unconfirmed[(seg, idx)] = None
            heartbeat = now >= self._next_heartbeat
            if heartbeat:
                held = [n for pair in self.held.values() for n in pair]
                resend = [n for pair in self.unconfirmed for n in pair]
        if acked or rejected:
            self.loop.send(codec.encode(Ack(queue=self.queue, acked=acked,
                                            rejected=[n for seg, idx, _ in rejected for n in (seg, idx)],
                                            reasons=[reason for _, _, reason in rejected])))
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
        offsets, total = [], 0
        for size in msg.sizes:
            offsets.append(total)
            total += size
        blob = wire.blob
        with self.cond:
            for i, attempt in zip(msg.live, msg.attempts):
                msg_id, token = msg.ids[i], (msg.segment, i)
                self.stats.received += 1
                if msg_id in self.done:
                    self.acks.extend(token)
                    self.stats.duplicates_dropped += 1
                elif msg_id in self.held:
                    self.stats.duplicates_dropped += 1
                else:
                    self.held[msg_id] = token
                    start = wire.first_frame[i]
                    self.ready.append(RawItem(msg_id, token, attempt, blob[offsets[i]:offsets[i] + msg.sizes[i]],
                                              wire.frames[start:start + msg.nframes[i]]))
                    if attempt > 1:
                        self.stats.redelivered += 1
            if self.waiters:
                self.cond.notify_all()
