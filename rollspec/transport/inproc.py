"""In-process work queue with the same contract as the ZMQ one: capacity back-pressure, leases,
acks, redelivery to another receiver, dedup by message id. For unit tests of actors (no sockets).

A receiver counts as alive while it keeps calling get/ack; one silent for lease_s (or closed)
loses its leases, which is how a test simulates a consumer dying mid-lease.
"""

import threading
import time
from collections import deque
from typing import Any, Hashable

from rollspec.transport import codec
from rollspec.transport.channel import Delivery, IdSource, Receiver, Sender, make_token, split_token
from rollspec.transport.config import QueueConfig
from rollspec.transport.dedup import BoundedIds
from rollspec.transport.errors import BackPressureTimeout, ChannelClosed
from rollspec.transport.lease_queue import DroppedItem, LeaseQueue, Segment
from rollspec.transport.registry import schema_info
from rollspec.transport.stats import ConsumerStats, ProducerStats, QueueStats


class InProcQueue:
    """A LeaseQueue behind a lock. With copy_through_codec each item is encoded on put and decoded on
    delivery, so receivers get private copies and unencodable items fail at put, as over ZMQ."""

    def __init__(self, config: QueueConfig, *, copy_through_codec: bool = True):
        self.queue = LeaseQueue(config)
        self.cond = threading.Condition()
        self.copy_through_codec = copy_through_codec
        self.inboxes: dict[Hashable, deque[tuple[Segment, int, int]]] = {}

    def sender(self) -> "InProcSender":
        """A new sender into this queue."""
        return InProcSender(self)

    def receiver(self, window_items: int = 64) -> "InProcReceiver":
        """A new receiver with its own lease window."""
        return InProcReceiver(self, window_items)

    def stats(self) -> QueueStats:
        """Counters snapshot of the queue."""
        with self.cond:
            return QueueStats(**self.queue.stats.as_dict())

    def drain_dropped(self) -> list[DroppedItem]:
        """Items given up on since the last call, with reasons."""
        with self.cond:
            out = list(self.queue.dropped)
            self.queue.dropped.clear()
        return out

    def pump(self, now: float) -> None:
        """Expire silent receivers and hand ready items to receivers' inboxes (lock held)."""
        self.queue.expire(now)
        for parcel in self.queue.dispatch(now):
            inbox = self.inboxes.get(parcel.consumer.key)
            if inbox is not None:
                for i, attempt in zip(parcel.indices, parcel.attempts):
                    inbox.append((parcel.segment, i, attempt))
        self.cond.notify_all()


class InProcSender(Sender):
    """Sender into an InProcQueue."""

    def __init__(self, hub: InProcQueue):
        self._hub = hub
        self._ids = IdSource()
        self._stats = ProducerStats()

    def put(self, item: Any, *, msg_id: str | None = None, timeout_s: float = 60.0) -> str:
        schema_info(item)
        payload = codec.encode_body(item) if self._hub.copy_through_codec else item
        msg_id = msg_id or self._ids.next()
        deadline = time.monotonic() + timeout_s
        hub = self._hub
        with hub.cond:
            while hub.queue.held >= hub.queue.config.capacity:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BackPressureTimeout(f"in-process queue {hub.queue.config.name!r} full for {timeout_s}s")
                self._stats.credit_waits += 1
                hub.cond.wait(remaining)
            hub.queue.offer([msg_id], [1], payload)
            self._stats.put += 1
            self._stats.confirmed += 1
            hub.pump(time.monotonic())
        return msg_id

    def flush(self, timeout_s: float = 60.0) -> bool:
        return True

    def stats(self) -> ProducerStats:
        return ProducerStats(**self._stats.as_dict())

    def close(self, timeout_s: float = 5.0) -> None:
        pass


class InProcReceiver(Receiver):
    """Receiver from an InProcQueue."""

    def __init__(self, hub: InProcQueue, window_items: int):
        self._hub = hub
        self._window = window_items
        self._key = id(self)
        self._done = BoundedIds(1 << 16)
        self._held: set[str] = set()
        self._stats = ConsumerStats()
        self._closed = False
        with hub.cond:
            hub.inboxes[self._key] = deque()
            hub.queue.touch(self._key, time.monotonic(), window_items, 1 << 62)
            hub.pump(time.monotonic())

    def get(self, timeout_s: float) -> Delivery | None:
        batch = self.get_batch(1, timeout_s)
        return batch[0] if batch else None

    def get_batch(self, max_items: int, timeout_s: float) -> list[Delivery]:
        hub, out = self._hub, list[Delivery]()
        deadline = time.monotonic() + timeout_s
        with hub.cond:
            if self._closed:
                raise ChannelClosed("in-process receiver is closed")
            inbox = hub.inboxes[self._key]
            while True:
                now = time.monotonic()
                hub.queue.touch(self._key, now, self._window, 1 << 62)
                hub.pump(now)
                while inbox and len(out) < max_items:
                    delivery = self._accept(*inbox.popleft())
                    if delivery is not None:
                        out.append(delivery)
                if out or now >= deadline:
                    return out
                hub.cond.wait(min(deadline - now, 0.05))

    def ack(self, delivery: Delivery) -> None:
        hub = self._hub
        with hub.cond:
            self._held.discard(delivery.msg_id)
            self._done.add(delivery.msg_id)
            hub.queue.ack(self._key, list(split_token(delivery.token)))
            self._stats.acked += 1
            hub.pump(time.monotonic())

    def stats(self) -> ConsumerStats:
        with self._hub.cond:
            return ConsumerStats(**self._stats.as_dict())

    def close(self, timeout_s: float = 5.0) -> None:
        with self._hub.cond:
            self._closed = True
            self._hub.queue.release(self._key)
            self._hub.inboxes.pop(self._key, None)
            self._hub.pump(time.monotonic())

    def _accept(self, segment: Segment, index: int, attempt: int) -> Delivery | None:
        msg_id = segment.ids[index]
        self._stats.received += 1
        if msg_id in self._done:
            self._hub.queue.ack(self._key, [segment.seg_id, index])
            self._stats.duplicates_dropped += 1
            return None
        if msg_id in self._held:  # redelivered while still being processed here: keep the one lease
            self._stats.duplicates_dropped += 1
            return None
        self._held.add(msg_id)
        item = segment.payload
        if self._hub.copy_through_codec:
            body, frames = item
            item = codec.decode_body(body, [bytearray(f) for f in frames])
        self._stats.delivered += 1
        self._stats.redelivered += attempt > 1
        return Delivery(msg_id, item, attempt, make_token(segment.seg_id, index))
