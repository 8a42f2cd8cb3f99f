"""ZMQ consumer: takes leased items from a broker-hosted queue; see channel.Receiver for the contract.

    with ZmqConsumer(address, "prompts", config=ConsumerConfig(window_items=8)) as prompts:
        while running:
            delivery = prompts.get(timeout_s=1.0)
            if delivery is None:
                continue
            trajectories.put(rollout(delivery.item), msg_id=delivery.msg_id)   # idempotent downstream
            prompts.ack(delivery)
"""

import logging
import math
import time
from collections import deque
from operator import attrgetter
from typing import Sequence

import zmq

from rollspec.transport import codec, heap
from rollspec.transport.channel import Delivery, Receiver
from rollspec.transport.config import ConsumerConfig
from rollspec.transport.consumer_core import ConsumerCore, Entry, PackedParcel, RawItem
from rollspec.transport.errors import ChannelClosed, MessageRejected
from rollspec.transport.faults import NO_FAULTS, FaultPlan
from rollspec.transport.registry import DEFAULT_REGISTRY, SchemaRegistry
from rollspec.transport.security import NO_SECURITY, SecurityConfig
from rollspec.transport.shared_loop import SharedIoLoop
from rollspec.transport.sockets import open_endpoint
from rollspec.transport.stats import ConsumerStats

log = logging.getLogger(__name__)
_msg_id = attrgetter("msg_id")


class ZmqConsumer(Receiver):
    """Receiver for one queue of a remote Broker. Use from one application thread at a time."""

    def __init__(self, address: str, queue: str, *, config: ConsumerConfig = ConsumerConfig(),
                 faults: FaultPlan = NO_FAULTS, registry: SchemaRegistry = DEFAULT_REGISTRY,
                 security: SecurityConfig = NO_SECURITY):
        self._core = ConsumerCore(queue, config)
        self._core.registry = registry
        if config.keep_freed_heap:
            heap.keep_freed(config.window_bytes)
        self._registry = registry
        self._decoded: deque[Delivery] = deque()  # decoded beyond what the last get_batch could return
        name = f"consumer:{queue}"
        endpoint = open_endpoint(zmq.DEALER, limits=config.limits, security=security, name=name,
                                 connect_address=address)
        self._loop = SharedIoLoop(name, endpoint.context, endpoint.socket, self._core, faults, routing_frames=0,
                            guard=endpoint.guard)
        self._core.loop = self._loop
        self._loop.start()

    def get(self, timeout_s: float) -> Delivery | None:
        """Next item or None after timeout_s (see Receiver.get)."""
        batch = self.get_batch(1, timeout_s)
        return batch[0] if batch else None

    def get_batch(self, max_items: int, timeout_s: float) -> list[Delivery]:
        """Items received (by this thread while it waits, see SharedIoLoop), decoded on this thread, or at
        intake for a delivery of one tensor item (ConsumerCore._take_tensor_item; see Receiver.get_batch)."""
        core = self._core
        deadline = time.monotonic() + timeout_s
        out: list[Delivery] = []
        while not out:
            if not self._decoded:
                self._decode_entries(self._take(max_items, deadline))
                if not self._decoded:
                    if time.monotonic() >= deadline:
                        return out
                    continue
            decoded = self._decoded
            if len(decoded) <= max_items:
                out, self._decoded = list(decoded), deque()
            else:
                out = [decoded.popleft() for _ in range(max_items)]
        core.stats.delivered += len(out)
        return out

    def ack(self, delivery: Delivery) -> None:
        """See Receiver.ack; the ack is sent from this thread (or by the I/O thread if it holds the socket)
        and resent in heartbeats until confirmed."""
        self.ack_many((delivery,))

    def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """Ack several deliveries under one lock acquisition (a parcel all of whose items are acked
        goes to the broker as one number)."""
        core, now = self._core, time.monotonic()
        ids = list(map(_msg_id, deliveries))
        with core.lock:
            waiting = core.ack_deadline  # acks already waiting for their deadline (inf: none)
            first = not (core.acks or core.parcel_acks)
            tokens = core.pop_held(ids, deliveries)
            if None in tokens:  # acked twice by the application: the first ack counts
                tokens = [token for token in tokens if token is not None]
                core.done.add_many(ids)
            else:
                core.remember_done(ids, tokens)
            core.settle(tokens)
            core.stats.acked += len(deliveries)
            due = core.acks_due(now) if core.acks or core.parcel_acks else waiting
        if due <= now and (first or waiting < math.inf):  # else the I/O thread was woken to send them
            self._send_acks()
        elif due < waiting:
            self._send_acks_by(due)

    def stats(self) -> ConsumerStats:
        """Counters snapshot, including injected faults."""
        with self._core.lock:
            snapshot = ConsumerStats(**self._core.stats.as_dict())
            snapshot.held = len(self._core.held) + self._core.held_runs.count
            snapshot.rejected = dict(self._core.reject_log.counts)
        snapshot.refused = self._loop.refused()
        snapshot.faults = self._loop.injector.counts.as_dict()
        return snapshot

    def close(self, timeout_s: float = 5.0) -> None:
        """Wait (up to timeout_s) until every ack is confirmed, then detach: the broker requeues what
        this consumer still holds at once instead of after lease_s."""
        core, loop = self._core, self._loop
        deadline = time.monotonic() + timeout_s
        loop.wake()
        try:
            while core.acks or core.parcel_acks or core.rejects or core.unconfirmed or core.unconfirmed_parcels:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                with loop.own:  # confirmations arrive on the socket: read them here, not on the next heartbeat
                    loop.pump(remaining)
        except ChannelClosed:
            pass  # already stopped (or failed): nothing more can be confirmed
        loop.stop()

    def _send_acks(self) -> None:
        """Send queued acks from this thread if the socket is free, else have the I/O thread send them."""
        loop = self._loop
        if loop.own.acquire(blocking=False):
            try:
                loop.serve()
            except ChannelClosed:
                pass  # closed: the broker requeues what was not acked
            finally:
                loop.own.release()
        else:
            loop.wake()

    def _send_acks_by(self, due: float) -> None:
        """Have whoever holds the socket next send the queued acks at `due` (get_batch's wait ends then)."""
        loop = self._loop
        if loop.own.acquire(blocking=False):
            try:
                loop.serve_by(due)
            finally:
                loop.own.release()
        else:  # the I/O thread holds the socket: it sends them now, as before deferral
            loop.wake()

    def _take(self, max_items: int, deadline: float) -> list[Entry]:
        """Received entries (single items, or whole packed parcels) holding up to about max_items items.
        This thread receives from the socket itself while it waits (see SharedIoLoop)."""
        core, loop = self._core, self._loop
        loop.check()
        if len(core.ready) < max_items and loop.own.acquire(blocking=False):
            try:  # what libzmq has queued, taken now so that batches stay large; or, if nothing is ready
                # yet, the wait for it in the same pass (one pump per message where items come one at a time)
                loop.pump(0.0 if core.ready else max(0.0, deadline - time.monotonic()))
            finally:
                loop.own.release()
        while not core.ready:
            loop.check()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            if loop.own.acquire(timeout=min(remaining, 0.05)):
                try:  # the I/O thread may have received while we waited for the socket
                    loop.pump(0.0 if core.ready else remaining)
                finally:
                    loop.own.release()
        with core.lock:
            out, count, ready = [], 0, core.ready
            while ready and count < max_items:
                entry = ready.popleft()
                count += len(entry.ids) if type(entry) is PackedParcel else 1
                out.append(entry)
            return out

    def _decode_entries(self, entries: list[Entry]) -> None:
        """Decode into self._decoded: packed parcels in one call each, single items in one loop (items
        decoded at intake are passed on)."""
        limits, registry, out = self._core.config.limits, self._registry, self._decoded
        if len(entries) == 1 and type(entries[0]) is Delivery:  # a large tensor, decoded at intake
            out.append(entries[0])
            return
        singles = []
        for entry in entries:
            if type(entry) is PackedParcel:
                self._decode_packed(entry)  # type: ignore[arg-type]
            elif type(entry) is Delivery:
                out.append(entry)
            else:
                singles.append(entry)
        if not singles:
            return
        # Items with tensor frames go straight to decode_body: the compiled path is for tensor-free schemas.
        fast = iter(codec.decode_bodies_compiled([item[3] for item in singles if not item[4]],
                                                 registry=registry, limits=limits))
        for item in singles:
            msg = next(fast) if not item[4] else None
            delivery = Delivery(item[0], msg, item[2], item[1]) if msg is not None else self._decode(item)
            if delivery is not None:
                out.append(delivery)

    def _decode_packed(self, parcel: PackedParcel) -> None:
        items = codec.decode_rows(parcel.blob, parcel.count, registry=self._registry, limits=self._core.config.limits)
        if len(parcel.rows) != parcel.count:
            items = [items[i] for i in parcel.rows]
        if MessageRejected not in set(map(type, items)):
            self._decoded.extend(map(Delivery, parcel.ids, items, parcel.attempts, parcel.tokens))
            return
        for msg_id, item, attempt, token in zip(parcel.ids, items, parcel.attempts, parcel.tokens):
            if type(item) is MessageRejected:
                self._reject(msg_id, token, item)
            else:
                self._decoded.append(Delivery(msg_id, item, attempt, token))

    def _decode(self, raw: RawItem) -> Delivery | None:
        msg_id, token, attempt, body, frames = raw
        try:
            item = codec.decode_body(body, frames, registry=self._registry, limits=self._core.config.limits)
        except MessageRejected as exc:
            self._reject(msg_id, token, exc)
            return None
        return Delivery(msg_id, item, attempt, token)

    def _reject(self, msg_id: str, token: int, exc: MessageRejected) -> None:
        with self._core.lock:
            self._core.reject(msg_id, token, exc)
        self._loop.wake()
