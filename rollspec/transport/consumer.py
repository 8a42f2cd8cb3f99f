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
import time
from typing import Sequence

import zmq

from rollspec.transport import codec
from rollspec.transport.channel import Delivery, Receiver
from rollspec.transport.config import ConsumerConfig
from rollspec.transport.consumer_core import ConsumerCore, RawItem
from rollspec.transport.errors import MessageRejected
from rollspec.transport.faults import NO_FAULTS, FaultPlan
from rollspec.transport.io_loop import IoLoop
from rollspec.transport.registry import DEFAULT_REGISTRY, SchemaRegistry
from rollspec.transport.security import NO_SECURITY, SecurityConfig
from rollspec.transport.sockets import open_endpoint
from rollspec.transport.stats import ConsumerStats

log = logging.getLogger(__name__)


class ZmqConsumer(Receiver):
    """Receiver for one queue of a remote Broker. Use from one application thread at a time."""

    def __init__(self, address: str, queue: str, *, config: ConsumerConfig = ConsumerConfig(),
                 faults: FaultPlan = NO_FAULTS, registry: SchemaRegistry = DEFAULT_REGISTRY,
                 security: SecurityConfig = NO_SECURITY):
        self._core = ConsumerCore(queue, config)
        self._registry = registry
        name = f"consumer:{queue}"
        endpoint = open_endpoint(zmq.DEALER, limits=config.limits, security=security, name=name,
                                 connect_address=address)
        self._loop = IoLoop(name, endpoint.context, endpoint.socket, self._core, faults, routing_frames=0,
                            guard=endpoint.guard)
        self._core.loop = self._loop
        self._loop.start()

    def get(self, timeout_s: float) -> Delivery | None:
        """Next item or None after timeout_s (see Receiver.get)."""
        batch = self.get_batch(1, timeout_s)
        return batch[0] if batch else None

    def get_batch(self, max_items: int, timeout_s: float) -> list[Delivery]:
        """Items already received, decoded on this thread (see Receiver.get_batch)."""
        core = self._core
        deadline = time.monotonic() + timeout_s
        out: list[Delivery] = []
        while not out:
            raw = self._take(max_items, deadline)
            if not raw:
                return out
            fast = codec.decode_bodies_compiled([item[3] if not item[4] else b"" for item in raw],
                                                registry=self._registry, limits=core.config.limits)
            new = tuple.__new__  # a NamedTuple's own constructor is a Python-level call per item
            for item, msg in zip(raw, fast):
                delivery = new(Delivery, (item[0], msg, item[2], item[1])) if msg is not None else self._decode(item)
                if delivery is not None:
                    out.append(delivery)
        core.stats.delivered += len(out)
        return out

    def ack(self, delivery: Delivery) -> None:
        """See Receiver.ack; the ack leaves in the next batch and is resent until confirmed."""
        self.ack_many((delivery,))

    def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """Ack several deliveries under one lock acquisition."""
        core = self._core
        ids = [delivery.msg_id for delivery in deliveries]
        with core.cond:
            first = not core.acks
            pop = core.held.pop
            for msg_id in ids:
                pop(msg_id, None)
            core.done.add_many(ids)
            core.acks.extend([delivery.token for delivery in deliveries])
            core.stats.acked += len(deliveries)
        if first:
            self._loop.wake()

    def stats(self) -> ConsumerStats:
        """Counters snapshot, including injected faults."""
        with self._core.cond:
            snapshot = ConsumerStats(**self._core.stats.as_dict())
            snapshot.held = len(self._core.held)
            snapshot.rejected = dict(self._core.reject_log.counts)
        snapshot.refused = self._loop.refused()
        snapshot.faults = self._loop.injector.counts.as_dict()
        return snapshot

    def close(self, timeout_s: float = 5.0) -> None:
        """Wait (up to timeout_s) until every ack is confirmed, then detach: the broker requeues what
        this consumer still holds at once instead of after lease_s."""
        core = self._core
        deadline = time.monotonic() + timeout_s
        self._loop.wake()
        with core.cond:
            while (core.acks or core.rejects or core.unconfirmed) and self._loop.failure is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                core.cond.wait(min(remaining, 0.05))
        self._loop.stop()

    def _take(self, max_items: int, deadline: float) -> list[RawItem]:
        core = self._core
        with core.cond:
            while not core.ready:
                self._loop.check()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                core.waiters += 1
                try:
                    core.cond.wait(remaining)
                finally:
                    core.waiters -= 1
            n = min(max_items, len(core.ready))
            return [core.ready.popleft() for _ in range(n)]

    def _decode(self, raw: RawItem) -> Delivery | None:
        msg_id, token, attempt, body, frames = raw
        try:
            item = codec.decode_body(body, frames, registry=self._registry, limits=self._core.config.limits)
        except MessageRejected as exc:
            core = self._core
            with core.cond:
                core.reject_log.record(exc, log)
                core.held.pop(msg_id, None)
                core.done.add(msg_id)
                core.rejects.append((token, exc.reason.value))
            self._loop.wake()
            return None
        return Delivery(msg_id, item, attempt, token)
