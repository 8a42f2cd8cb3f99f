"""ZMQ producer: puts items on a broker-hosted queue with credit-based back-pressure and retries.

put() encodes on the caller's thread and blocks only for credit; the I/O thread batches whatever
accumulated while it was busy into one PutBatch (natural batching: no timer, no added latency when
idle), resends items the broker has not confirmed after retry_s, and heartbeats.
"""

import logging
import threading
import time
import uuid
from typing import Any

import zmq

from rollspec.transport import codec, segments
from rollspec.transport.channel import IdSource, Sender
from rollspec.transport.config import ProducerConfig
from rollspec.transport.errors import BackPressureTimeout, MessageRejected, RejectReason
from rollspec.transport.faults import NO_FAULTS, FaultPlan
from rollspec.transport.io_loop import IoLoop
from rollspec.transport.protocol import Detach, Heartbeat, PutAck, PutBatch
from rollspec.transport.segments import WireItem
from rollspec.transport.sockets import check_address, make_socket
from rollspec.transport.stats import ProducerStats, RejectCounter

log = logging.getLogger(__name__)


class ProducerCore:
    """IoHandler of a producer. State shared with the app thread is guarded by `cond`'s lock."""

    def __init__(self, queue: str, config: ProducerConfig):
        self.queue = queue
        self.config = config
        self.cond = threading.Condition()
        self.loop: IoLoop | None = None
        self.granted = 0
        self.next_seq = 1
        self.outbox: list[tuple[int, WireItem]] = []
        self.unacked: dict[int, tuple[WireItem, float]] = {}  # insertion order = oldest send first
        self.stats = ProducerStats()
        self.rejects = RejectCounter(f"producer:{queue}")
        self._next_heartbeat = 0.0

    def on_message(self, frames: list[zmq.Frame]) -> None:
        try:
            msg = codec.decode([f.buffer for f in frames], limits=self.config.limits)
            if type(msg) is not PutAck:
                raise MessageRejected(RejectReason.UNEXPECTED, f"{type(msg).__name__} sent to a producer")
        except MessageRejected as exc:
            self.rejects.record(exc, log)
            return
        with self.cond:
            for seq in msg.seqs:
                if self.unacked.pop(seq, None) is not None:
                    self.stats.confirmed += 1
            if msg.granted > self.granted or msg.seqs:
                self.granted = max(self.granted, msg.granted)
                self.cond.notify_all()

    def service(self, now: float) -> float:
        with self.cond:
            fresh, self.outbox = self.outbox, []
            for seq, item in fresh:
                self.unacked[seq] = (item, now)
            due = []
            for seq, (item, sent_at) in self.unacked.items():
                if sent_at + self.config.retry_s > now:
                    break
                due.append((seq, item))
            for seq, item in due:
                del self.unacked[seq]
                self.unacked[seq] = (item, now)
            self.stats.resent += len(due)
            oldest = next(iter(self.unacked.values()))[1] if self.unacked else now
        self._send_batches(due + fresh)
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self.config.heartbeat_s
            self.loop.send(codec.encode(Heartbeat(queue=self.queue, role="producer", window_items=self.config.window,
                                                  window_bytes=1, held=[], acked=[])))
        return min(self._next_heartbeat, oldest + self.config.retry_s)

    def on_stop(self) -> None:
        self.loop.send(codec.encode(Detach(queue=self.queue, role="producer")))

    def _send_batches(self, items: list[tuple[int, WireItem]]) -> None:
        start, nbytes = 0, 0
        for end, (_, item) in enumerate(items, 1):
            nbytes += item.nbytes
            if end - start < self.config.batch_items and nbytes < self.config.batch_bytes and end < len(items):
                continue
            batch = items[start:end]
            wire = segments.pack([item for _, item in batch], self.config.checksum_tensors)
            header = PutBatch(queue=self.queue, window=self.config.window, seqs=[seq for seq, _ in batch],
                              ids=[item.msg_id for _, item in batch], sizes=wire.sizes, nframes=wire.nframes,
                              blob_crc=wire.blob_crc, frame_crcs=wire.frame_crcs)
            self.loop.send([*codec.encode(header), wire.blob, *wire.frames])
            start, nbytes = end, 0


class ZmqProducer(Sender):
    """Sender for one queue of a remote Broker (see channel.Sender for the contract)."""

    def __init__(self, address: str, queue: str, *, config: ProducerConfig = ProducerConfig(),
                 faults: FaultPlan = NO_FAULTS):
        self._core = ProducerCore(queue, config)
        self._ids = IdSource()
        socket = make_socket(zmq.DEALER, limits=config.limits, identity=uuid.uuid4().bytes)
        socket.connect(check_address(address))
        self._loop = IoLoop(f"producer:{queue}", socket, self._core, faults, routing_frames=0)
        self._core.loop = self._loop
        self._loop.start()

    def put(self, item: Any, *, msg_id: str | None = None, timeout_s: float = 60.0) -> str:
        body, frames = codec.encode_body(item)
        msg_id = msg_id or self._ids.next()
        wire = WireItem(msg_id, body, frames, len(body) + sum(f.nbytes for f in frames))
        core = self._core
        with core.cond:
            if core.next_seq > core.granted:
                core.stats.credit_waits += 1
                deadline = time.monotonic() + timeout_s
                while core.next_seq > core.granted:
                    self._loop.check()
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise BackPressureTimeout(f"no credit from queue {core.queue!r} for {timeout_s}s "
                                                  f"({len(core.unacked)} items unconfirmed)")
                    core.cond.wait(min(remaining, 0.1))
            core.outbox.append((core.next_seq, wire))
            core.next_seq += 1
            core.stats.put += 1
            first = len(core.outbox) == 1
        if first:
            self._loop.wake()
        return msg_id

    def flush(self, timeout_s: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._core.cond:
            while self._core.outbox or self._core.unacked:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._loop.failure is not None:
                    return False
                self._core.cond.wait(min(remaining, 0.1))
        return True

    def stats(self) -> ProducerStats:
        with self._core.cond:
            snapshot = ProducerStats(**self._core.stats.as_dict())
            snapshot.unconfirmed = len(self._core.unacked) + len(self._core.outbox)
            snapshot.rejected = dict(self._core.rejects.counts)
        snapshot.faults = self._loop.injector.counts.as_dict()
        return snapshot

    def close(self, timeout_s: float = 5.0) -> None:
        self.flush(timeout_s)
        self._loop.stop()
