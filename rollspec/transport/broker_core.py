"""The broker's protocol engine, run on its I/O thread: routes control messages to the queues,
leases items to consumers, grants producers credit, expires silent endpoints.

Every inbound message is validated before it touches a queue; a bad one is counted per reason and
dropped, and the broker carries on (DESIGN invariant 5).
"""

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, cast

import zmq

from rollspec.transport import segments
from rollspec.transport.codec import decode, decode_view, encode, encode_trusted
from rollspec.transport.config import CodecLimits, QueueConfig
from rollspec.transport.credit_ledger import CreditLedger
from rollspec.transport.errors import MessageRejected, RejectReason
from rollspec.transport.io_loop import IoLoop
from rollspec.transport.lease_queue import LeaseQueue, Parcel
from rollspec.transport.protocol import (
    OMITTED,
    Ack,
    AckConfirm,
    Deliver,
    Detach,
    Heartbeat,
    PutAck,
    PutBatch,
    compact_lists,
    put_lists,
)
from rollspec.transport.stats import RejectCounter

log = logging.getLogger(__name__)
TICK_S = 0.05  # how often leases are checked and credit is topped up without other activity
# Confirmations held for one consumer before they go alone instead of on its next Deliver (at most a
# tick later): a consumer's acks are only resent in its heartbeats (heartbeat_s) until confirmed.
_MAX_HELD_CONFIRMS = 4096


@dataclass(slots=True, eq=False)
class HostedQueue:
    """A queue plus its producers' credit and the settings of this process's own sender."""

    queue: LeaseQueue
    ledger: CreditLedger = field(default_factory=CreditLedger)
    local_batch_items: int = 256
    local_batch_bytes: int = 4 << 20
    local_checksum_tensors: bool = False
    local_frame_bytes: int = 0

    def __post_init__(self) -> None:
        self.queue.coalesce = self.coalesce

    def coalesce(self, payloads: Iterable[segments.WirePayload]) -> tuple[segments.WirePayload, int] | None:
        """Fresh segments a local sender put, leased as one parcel of up to its batch size: a put_many of 64
        items is one segment, but while consumers are busy those waiting go out 256 to a Deliver (per-parcel
        work on every side divided by four). Segments from peers are never merged (see WirePayload.local)."""
        return segments.coalesce_packed(payloads, self.local_batch_items, self.local_batch_bytes)

    def free(self) -> int:
        """Slots neither held nor promised to a producer (none while the byte capacity is used up)."""
        config = self.queue.config
        if self.queue.stats.bytes_held >= config.capacity_bytes:
            return 0
        return config.capacity - self.queue.held - self.ledger.reserved()


class BrokerCore:
    """IoHandler of the broker. `lock` guards the queues against stats readers and local senders;
    `space` (on the same lock) is notified whenever capacity may have freed up."""

    loop: IoLoop  # set by the endpoint right after the loop is built (the loop needs this handler first)
    service_after_message = True  # acks and puts free room or add items: dispatch after every burst

    def __init__(self, configs: list[QueueConfig], limits: CodecLimits) -> None:
        self.hosted = {c.name: HostedQueue(LeaseQueue(c)) for c in configs}
        self.limits = limits
        self.lock = threading.Lock()
        self.space = threading.Condition(self.lock)
        self.rejects = RejectCounter("broker")
        self._next_expiry = 0.0
        self._confirms: dict[bytes, tuple[list[int], list[int]]] = {}  # identity -> (pairs, parcels) to confirm
        self._handlers: dict[type, Callable[[bytes, HostedQueue, Any, list[Any]], None]] = {
            Heartbeat: self._on_heartbeat, PutBatch: self._on_put, Ack: self._on_ack, Detach: self._on_detach,
        }

    # --- IoHandler ---------------------------------------------------------------------------------
    def on_message(self, frames: list[zmq.Frame]) -> None:
        if len(frames) < 2:
            self.rejects.record(MessageRejected(RejectReason.MALFORMED, f"{len(frames)} frames"), log)
            return
        identity = frames[0].bytes
        try:
            header = frames[1].buffer
            msg = decode_view(header, Ack, self.limits)  # a consumer's ack, the common message, in one C call
            if msg is not None:
                handler: Any = self._on_ack
            else:
                msg = decode([header], limits=self.limits)
                handler = self._handlers.get(type(msg))
            if handler is None:
                raise MessageRejected(RejectReason.UNEXPECTED, f"{type(msg).__name__} is not sent to a broker")
            hosted = self.hosted.get(msg.queue)
            if hosted is None:
                raise MessageRejected(RejectReason.INVALID_FIELD, f"no queue named {msg.queue!r}")
            with self.lock:
                handler(identity, hosted, msg, frames[2:])
        except MessageRejected as exc:
            self.rejects.record(exc, log)

    def service(self, now: float) -> float:
        with self.lock:
            for hosted in self.hosted.values():
                if now >= self._next_expiry:
                    hosted.queue.expire(now)
                    hosted.ledger.reap(now, hosted.queue.config.lease_s)
                for parcel in hosted.queue.dispatch(now):
                    self._deliver(parcel)
                for producer in hosted.ledger.top_up(hosted.free()):
                    self._send(cast(bytes, producer.key), PutAck(seqs=[], granted=producer.granted))
            if now >= self._next_expiry:
                self._next_expiry = now + TICK_S
                self._flush_confirms()
            self.space.notify_all()
        return now + TICK_S

    def on_stop(self) -> None:
        pass

    # --- handlers (lock held) --------------------------------------------------------------------------
    def _on_heartbeat(self, identity: bytes, hosted: HostedQueue, msg: Heartbeat, payload: list[Any]) -> None:
        now = _now()
        if msg.role == "producer":
            producer = hosted.ledger.touch(identity, msg.window_items, now)
            self._send(identity, PutAck(seqs=[], granted=producer.granted))
            return
        queue = hosted.queue
        queue.touch(identity, now, msg.window_items, msg.window_bytes)
        if msg.acked or msg.parcels:
            queue.ack(identity, msg.acked)
            queue.ack_parcels(identity, msg.parcels)
            self._confirm(identity, msg.acked, msg.parcels)
        held = {(msg.held[k], msg.held[k + 1]) for k in range(0, len(msg.held), 2)}
        queue.report_held(identity, held, now)

    def _on_put(self, identity: bytes, hosted: HostedQueue, msg: PutBatch, payload: list[Any]) -> None:
        producer = hosted.ledger.touch(identity, msg.window, _now())
        if not payload:
            raise MessageRejected(RejectReason.MALFORMED, "put without a body blob")
        ids, sizes, nframes = put_lists(msg, memoryview(payload[0]).nbytes)
        wire = segments.receive(payload[0], payload[1:], blob_crc=msg.blob_crc, sizes=sizes, nframes=nframes,
                                live=list(range(len(ids))), frame_crcs=msg.frame_crcs, packed=msg.packed)
        run = (msg.id_prefix, msg.id_first) if msg.id_prefix else None  # its ids were just made from it, here
        hosted.queue.offer(ids, segments.item_sizes(wire), wire, run=run)
        hosted.ledger.on_items(producer, max(msg.seqs))
        self._send(identity, PutAck(seqs=msg.seqs[:1], granted=producer.granted))

    def _on_ack(self, identity: bytes, hosted: HostedQueue, msg: Ack, payload: list[Any]) -> None:
        queue = hosted.queue
        queue.heard_from(identity, _now())
        # Rejections first: a parcel ack must not mark an item acked that its consumer refused.
        if msg.rejected:
            queue.ack(identity, msg.rejected, reasons=msg.reasons)
        if msg.acked:
            queue.ack(identity, msg.acked)
        if msg.parcels:
            queue.ack_parcels(identity, msg.parcels)
        self._confirm(identity, msg.acked + msg.rejected, msg.parcels)

    def _on_detach(self, identity: bytes, hosted: HostedQueue, msg: Detach, payload: list[Any]) -> None:
        if msg.role == "producer":
            hosted.ledger.remove(identity)
        else:
            hosted.queue.release(identity)

    # --- the local sender's thread, holding the socket ------------------------------------------------
    def deliver_ready(self, hosted: HostedQueue) -> None:
        """Lease what consumers of this queue have room for and send it (a local put's dispatch)."""
        with self.lock:
            for parcel in hosted.queue.dispatch(_now()):
                self._deliver(parcel)

    # --- helpers -----------------------------------------------------------------------------------

    def _deliver(self, parcel: Parcel) -> None:
        segment = parcel.segment
        wire: segments.WirePayload = segment.payload
        frames, crcs = wire.frames_for(parcel.indices)
        pairs, parcels = self._confirms.pop(cast(bytes, parcel.consumer.key), _NOTHING)
        # Compact forms (see Deliver): a whole packed segment of generated ids goes with no per-item list. A
        # parcel's indices are distinct, so n of them are all the segment's, in an order that uniform attempts
        # make irrelevant (the consumer's tokens name indices, not positions).
        indices, attempts, n, run = parcel.indices, parcel.attempts, len(segment.ids), segment.run
        uniform = attempts.count(attempts[0]) == len(attempts)
        header = encode_trusted(Deliver, segment=segment.seg_id, parcel=parcel.seq, count=n,
                                live=OMITTED if uniform and len(indices) == n else indices,
                                attempts=attempts[:1] if uniform else attempts, **compact_lists(segment.ids, run, wire),
                                blob_crc=wire.blob_crc, frame_crcs=crcs, packed=wire.packed, confirmed=pairs,
                                confirmed_parcels=parcels)
        self.loop.send([parcel.consumer.key, *header, wire.blob, *frames])

    def _confirm(self, identity: bytes, pairs: list[int], parcels: list[int]) -> None:
        """Hold a confirmation for the consumer's next Deliver (or the next tick, whichever comes first)."""
        if not pairs and not parcels:
            return
        held = self._confirms.get(identity)
        if held is None:
            held = self._confirms[identity] = ([], [])
        held[0].extend(pairs)
        held[1].extend(parcels)
        if len(held[0]) + 2 * len(held[1]) > _MAX_HELD_CONFIRMS:
            del self._confirms[identity]
            self._send(identity, AckConfirm(pairs=held[0], parcels=held[1]))

    def _flush_confirms(self) -> None:
        """Send alone the confirmations no delivery carried since the last tick."""
        confirms, self._confirms = self._confirms, {}
        for identity, (pairs, parcels) in confirms.items():
            self._send(identity, AckConfirm(pairs=pairs, parcels=parcels))

    def _send(self, identity: bytes, msg: Any) -> None:
        self.loop.send([identity, *encode(msg)])


_now = time.monotonic
_NOTHING: tuple[list[int], list[int]] = ([], [])  # never mutated: popped as the default of _confirms
