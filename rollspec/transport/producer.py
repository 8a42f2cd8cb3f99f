"""ZMQ producer: puts items on a broker-hosted queue with credit-based back-pressure and retries.

put_many() encodes its items as segments on the caller's thread (segments.py) and blocks only for
credit (counted in items); the I/O thread sends each segment as one PutBatch, resends segments the
broker has not confirmed after retry_s (the broker dedups their items by id), and heartbeats.
"""

import logging
import threading
import time
from collections import deque
from typing import Any, Sequence

import zmq

from rollspec.transport import codec, segments
from rollspec.transport.channel import IdSource, Sender
from rollspec.transport.config import ProducerConfig
from rollspec.transport.errors import MessageRejected, RejectReason
from rollspec.transport.faults import NO_FAULTS, FaultPlan
from rollspec.transport.io_loop import IoLoop
from rollspec.transport.protocol import Detach, Heartbeat, PutAck, PutBatch, compact_lists
from rollspec.transport.security import NO_SECURITY, SecurityConfig
from rollspec.transport.segments import OutSegment, WirePayload
from rollspec.transport.sockets import open_endpoint
from rollspec.transport.stats import ProducerStats, RejectCounter

log = logging.getLogger(__name__)
Run = tuple[str, int] | None  # (prefix, first) of a segment of generated ids (IdSource.run_of), else None
Outgoing = tuple[int, list[str], WirePayload, Run]  # (first seq, ids, wire, run) of a segment to send


class ProducerCore:
    """IoHandler of a producer. State shared with the app thread is guarded by `cond`'s lock."""

    loop: IoLoop  # set by the endpoint right after the loop is built (the loop needs this handler first)
    service_after_message = False  # a PutAck only frees credit for the application thread

    def __init__(self, queue: str, config: ProducerConfig):
        self.queue = queue
        self.config = config
        self.cond = threading.Condition()
        self.granted = 0
        self.next_seq = 1
        self.pending_bytes = 0  # outbox + unacked
        # (first seq, ids, wire, run) of segments to send, and of those sent: first seq -> (ids, wire, sent_at,
        # batch number, run); insertion order = send order, so oldest first. run: (prefix, first) of generated ids.
        self.outbox: list[Outgoing] = []
        self.unacked: dict[int, tuple[list[str], WirePayload, float, int, Run]] = {}
        self.stats = ProducerStats()
        self.rejects = RejectCounter(f"producer:{queue}")
        self._batches_sent = 0
        self._confirmed_batch = -1  # highest batch number with a confirmed item
        self._last_progress = 0.0
        self._next_heartbeat = 0.0

    def room(self) -> int:
        """Items there is credit for, or 0 while the byte window is full (lock held)."""
        if self.pending_bytes >= self.config.window_bytes and self.pending_bytes:
            return 0
        return max(0, self.granted - self.next_seq + 1)

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
                entry = self.unacked.pop(seq, None)
                if entry is not None:
                    self.stats.confirmed += len(entry[0])
                    self.pending_bytes -= entry[1].nbytes
                    self._confirmed_batch = max(self._confirmed_batch, entry[3])
                    self._last_progress = time.monotonic()
            if msg.granted > self.granted or msg.seqs:
                self.granted = max(self.granted, msg.granted)
                self.cond.notify_all()

    def service(self, now: float) -> float:
        with self.cond:
            fresh, self.outbox = self.outbox, []
            due = self._due(now)
            self.stats.resent += len(due)
            batches = self._batches(due + fresh, now)
            oldest = next(iter(self.unacked.values()))[2] if self.unacked else now
        for frames in batches:
            self.loop.send(frames)
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self.config.heartbeat_s
            self.loop.send(codec.encode(Heartbeat(queue=self.queue, role="producer", window_items=self.config.window,
                                                  window_bytes=self.config.window_bytes, held=[], acked=[],
                                                  parcels=[])))
        return min(self._next_heartbeat, oldest + self.config.retry_s / 4)

    def on_stop(self) -> None:
        self.loop.send(codec.encode(Detach(queue=self.queue, role="producer")))

    def _due(self, now: float) -> list[Outgoing]:
        """Items to send again. The broker handles a producer's messages in order, so an item sent
        before a confirmed batch and still unconfirmed was lost (after a grace for injected reordering);
        if nothing at all was confirmed for retry_s, everything older than retry_s is sent again. A slow
        but live broker therefore causes no resends."""
        retry_s, due = self.config.retry_s, []
        stalled = now - self._last_progress > retry_s
        for seq, (ids, wire, sent_at, batch, run) in self.unacked.items():
            age = now - sent_at
            if (batch < self._confirmed_batch and age > retry_s / 4) or (stalled and age > retry_s):
                due.append((seq, ids, wire, run))
            elif batch >= self._confirmed_batch and not (stalled and age > retry_s):
                break
        for seq, *_ in due:
            del self.unacked[seq]  # re-inserted at the end by _batches: order stays send order
        return due

    def _batches(self, segs: list[Outgoing], now: float) -> list[list[Any]]:
        """One PutBatch per segment (a segment is already the unit of batching), in its compact forms where
        they apply (a run of generated ids, a packed segment's sizes)."""
        out: list[list[Any]] = []
        for seq, ids, wire, run in segs:
            header = codec.encode_trusted(PutBatch, queue=self.queue, window=self.config.window,
                                          seqs=list(range(seq, seq + len(ids))), **compact_lists(ids, run, wire),
                                          blob_crc=wire.blob_crc, frame_crcs=wire.frame_crcs, packed=wire.packed)
            self.unacked[seq] = (ids, wire, now, self._batches_sent, run)
            self._batches_sent += 1
            out.append([*header, wire.blob, *wire.frames])
        return out


class ZmqProducer(Sender):
    """Sender for one queue of a remote Broker (see channel.Sender for the contract)."""

    def __init__(self, address: str, queue: str, *, config: ProducerConfig = ProducerConfig(),
                 faults: FaultPlan = NO_FAULTS, security: SecurityConfig = NO_SECURITY):
        self._core = ProducerCore(queue, config)
        self._ids = IdSource()
        name = f"producer:{queue}"
        endpoint = open_endpoint(zmq.DEALER, limits=config.limits, security=security, name=name,
                                 connect_address=address)
        self._loop = IoLoop(name, endpoint.context, endpoint.socket, self._core, faults, routing_frames=0,
                            guard=endpoint.guard)
        self._core.loop = self._loop
        self._loop.start()

    def put(self, item: Any, *, msg_id: str | None = None, timeout_s: float = 60.0) -> str:
        """Encode on this thread, wait for credit and byte room, queue for the I/O thread (see Sender.put)."""
        return self.put_many((item,), msg_ids=None if msg_id is None else (msg_id,), timeout_s=timeout_s)[0]

    def put_many(self, items: Sequence[Any], *, msg_ids: Sequence[str] | None = None,
                 timeout_s: float = 60.0) -> list[str]:
        """Encode as segments, then queue each once there is credit for all its items (or, after
        segments.PARTIAL_AFTER_S, for part of it: that part goes as a smaller segment)."""
        self._loop.check()
        generated = msg_ids is None
        ids = self._ids.take(len(items)) if generated else list(msg_ids)  # type: ignore[arg-type]
        core, config = self._core, self._core.config
        pending = deque(segments.encode_chunks(items, ids, min(config.batch_items, config.window),
                                               config.batch_bytes, config.checksum_tensors, config.tensor_frame_bytes))

        def on_full() -> None:
            core.stats.credit_waits += 1
            self._loop.wake()  # what is queued so far must go out, or credit never returns
            self._loop.check()

        with core.cond:
            segments.send_as_room_allows(
                pending, room=core.room, wait=core.cond.wait, on_full=on_full,
                send=lambda segment: self._queue(segment, self._ids.run_of(segment.ids) if generated else None),
                checksum_tensors=config.checksum_tensors, frame_bytes=config.tensor_frame_bytes, timeout_s=timeout_s,
                timeout_message=lambda done: (f"no credit from queue {core.queue!r} for {timeout_s}s "
                                              f"({len(core.unacked)} unconfirmed); {done} of {len(ids)} sent"))
        return ids

    def _queue(self, segment: OutSegment, run: Run) -> None:
        core = self._core
        if not core.outbox:
            self._loop.wake()
        core.outbox.append((core.next_seq, segment.ids, segment.wire, run))
        core.pending_bytes += segment.wire.nbytes
        core.next_seq += len(segment.ids)
        core.stats.put += len(segment.ids)

    def flush(self, timeout_s: float = 60.0) -> bool:
        """Wait until the broker has confirmed every item put so far."""
        deadline = time.monotonic() + timeout_s
        with self._core.cond:
            while self._core.outbox or self._core.unacked:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._loop.failure is not None:
                    return False
                self._core.cond.wait(min(remaining, 0.1))
        return True

    def stats(self) -> ProducerStats:
        """Counters snapshot, including injected faults."""
        with self._core.cond:
            snapshot = ProducerStats(**self._core.stats.as_dict())
            snapshot.unconfirmed = (sum(len(entry[0]) for entry in self._core.unacked.values())
                                    + sum(len(entry[1]) for entry in self._core.outbox))
            snapshot.rejected = dict(self._core.rejects.counts)
        snapshot.refused = self._loop.refused()
        snapshot.faults = self._loop.injector.counts.as_dict()
        return snapshot

    def close(self, timeout_s: float = 5.0) -> None:
        """Flush (up to timeout_s), detach, and release the socket and its zero-copy buffers."""
        self.flush(timeout_s)
        self._loop.stop()
