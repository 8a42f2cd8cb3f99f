"""The broker: hosts work queues on one ROUTER socket (in the controller process) and owns their leases.

    broker = Broker([QueueConfig(name="prompts"), QueueConfig(name="trajectories")])
    prompts = broker.sender("prompts")          # in-process producer (the controller)
    # rollout actors: ZmqConsumer(broker.address, "prompts"); ZmqProducer(broker.address, "trajectories")
    broker.stats("prompts").as_dict()           # depth, in flight, redelivered, dropped by reason, ...
    broker.drain_dropped("prompts")             # items given up on, with reasons
"""

from collections import deque
from functools import partial
from typing import Any, Sequence

import zmq

from rollspec.transport import segments
from rollspec.transport.broker_core import BrokerCore, HostedQueue
from rollspec.transport.channel import IdSource, Sender
from rollspec.transport.config import CodecLimits, ProducerConfig, QueueConfig
from rollspec.transport.errors import ChannelClosed, ConfigError
from rollspec.transport.faults import NO_FAULTS, FaultPlan
from rollspec.transport.lease_queue import DroppedItem
from rollspec.transport.security import NO_SECURITY, SecurityConfig
from rollspec.transport.shared_loop import SharedIoLoop
from rollspec.transport.sockets import DEFAULT_BIND, open_endpoint
from rollspec.transport.stats import ProducerStats, QueueStats


class Broker:
    """Hosts named work queues and serves them on `address` from a background I/O thread.

    Invariant it maintains (with the endpoints' retries): an item accepted from a producer is
    delivered until acked, or recorded in `drain_dropped` with a reason; never both, never lost.
    """

    def __init__(self, queues: list[QueueConfig], *, bind_address: str = DEFAULT_BIND,
                 limits: CodecLimits = CodecLimits(), faults: FaultPlan = NO_FAULTS,
                 security: SecurityConfig = NO_SECURITY):
        names = [q.name for q in queues]
        if not names or len(set(names)) != len(names):
            raise ConfigError("Broker.queues", names, "at least one queue, unique names")
        self._core = BrokerCore(queues, limits)
        endpoint = open_endpoint(zmq.ROUTER, limits=limits, security=security, name="broker",
                                 bind_address=bind_address)
        self.address = endpoint.address
        # Shared: a local sender's thread dispatches what it put itself (LocalSender.put_many); the I/O
        # thread watches the socket for peers' messages and keeps leases, credit and confirmations going.
        self._loop = SharedIoLoop("broker", endpoint.context, endpoint.socket, self._core, faults, routing_frames=1,
                                  guard=endpoint.guard, watch_socket=True)
        self._core.loop = self._loop
        self._loop.start()

    def sender(self, queue: str, config: ProducerConfig = ProducerConfig()) -> "LocalSender":
        """An in-process producer for `queue` (no socket hop; same back-pressure and dedup)."""
        hosted = self._core.hosted.get(queue)
        if hosted is None:
            raise ConfigError("queue", queue, f"one of {sorted(self._core.hosted)}")
        hosted.local_batch_items = config.batch_items
        hosted.local_batch_bytes = config.batch_bytes
        hosted.local_checksum_tensors = config.checksum_tensors
        hosted.local_frame_bytes = config.tensor_frame_bytes
        return LocalSender(self, queue)

    def stats(self, queue: str) -> QueueStats:
        """Counters snapshot of one queue (copied under the broker lock)."""
        with self._core.lock:
            hosted = self._core.hosted[queue]
            snapshot = QueueStats(**hosted.queue.stats.as_dict())
            snapshot.producers = len(hosted.ledger)
            snapshot.rejected = dict(self._core.rejects.counts)
        snapshot.refused = self._loop.refused()
        return snapshot

    def drain_dropped(self, queue: str) -> list[DroppedItem]:
        """Items given up on since the last call (max_attempts, rejected by a consumer), with reasons."""
        with self._core.lock:
            dropped = self._core.hosted[queue].queue.dropped
            out = list(dropped)
            dropped.clear()
        return out

    def fault_counts(self) -> dict[str, int]:
        """Faults injected on the broker's outbound messages so far (tests and chaos/)."""
        return self._loop.injector.counts.as_dict()

    def close(self) -> None:
        """Stop serving. Leased items are lost with the process: the controller checkpoints first."""
        self._loop.stop()

    def __enter__(self) -> "Broker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalSender(Sender):
    """Producer living in the broker's process: encodes each put_many as segments on the caller's thread,
    offers them to the queue under the broker lock, and blocks while the queue is full. Items are
    confirmed as soon as they are queued. If a consumer has room for them, the caller's thread also
    leases and sends them itself when the broker's socket is free (no wake-up of the I/O thread per
    put); otherwise the I/O thread does, once it holds the socket or an ack makes room."""

    def __init__(self, broker: Broker, queue: str):
        self._broker = broker
        self._queue = queue
        self._ids = IdSource()
        self._put = 0

    def put(self, item: Any, *, msg_id: str | None = None, timeout_s: float = 60.0) -> str:
        """Encode on this thread and queue under the broker lock; blocks while the queue is full."""
        return self.put_many((item,), msg_ids=None if msg_id is None else (msg_id,), timeout_s=timeout_s)[0]

    def put_many(self, items: Sequence[Any], *, msg_ids: Sequence[str] | None = None,
                 timeout_s: float = 60.0) -> list[str]:
        """Encode as segments (one C call per segment of tensor-free items), then queue each segment
        once the queue has room for it, and deliver what consumers have room for."""
        loop = self._broker._loop
        loop.check()
        generated = msg_ids is None
        ids = self._ids.take(len(items)) if generated else list(msg_ids)  # type: ignore[arg-type]
        core = self._broker._core
        hosted = core.hosted[self._queue]
        queue = hosted.queue
        max_items = min(hosted.local_batch_items, queue.config.capacity)
        pending = deque(segments.encode_chunks(items, ids, max_items, hosted.local_batch_bytes,
                                               hosted.local_checksum_tensors, hosted.local_frame_bytes))

        def send(segment: segments.OutSegment) -> None:
            # generated ids: the segment's are one run, kept as one range by the queue's dedup and sent as one
            run = self._ids.run_of(segment.ids) if generated else None
            queue.offer(segment.ids, segments.item_sizes(segment.wire), segment.wire, run=run)
            self._put += len(segment.ids)

        def on_full() -> None:  # about to wait with the broker lock held: the I/O thread delivers meanwhile
            if queue.can_dispatch():
                loop.wake()
            loop.check()

        with core.space:
            segments.send_as_room_allows(
                pending, room=hosted.free, send=send, wait=core.space.wait, on_full=on_full,
                checksum_tensors=hosted.local_checksum_tensors, frame_bytes=hosted.local_frame_bytes, timeout_s=timeout_s,
                timeout_message=lambda done: (f"queue {self._queue!r} full for {timeout_s}s (capacity "
                                              f"{queue.config.capacity}); {done} of {len(ids)} queued"))
            due = queue.can_dispatch()
        if due:
            self._deliver(hosted)
        return ids

    def _deliver(self, hosted: HostedQueue) -> None:
        """Deliver on this thread if the socket is free, else have the I/O thread do it. Never called
        with the broker lock held: the lock order is socket, then broker lock."""
        loop = self._broker._loop
        if not loop.own.acquire(blocking=False):
            loop.wake()  # the I/O thread holds the socket: it services once more after this wake
            return
        try:
            loop.call(partial(self._broker._core.deliver_ready, hosted))
        except ChannelClosed:
            pass  # stopped meanwhile: what was queued is lost with the broker, as on close()
        finally:
            loop.own.release()

    def flush(self, timeout_s: float = 60.0) -> bool:
        """Nothing to wait for: put_many returns once its items are in the queue."""
        return True

    def stats(self) -> ProducerStats:
        """Counters snapshot (local items are confirmed once queued)."""
        return ProducerStats(put=self._put, confirmed=self._put)

    def close(self, timeout_s: float = 5.0) -> None:
        """Nothing to flush; the broker keeps running."""
