"""The channel interface actors program against: a Sender and a Receiver of schema messages.

Two implementations share these semantics: ZMQ endpoints attached to a broker-hosted work queue
(producer.py, consumer.py, broker.py) and an in-process queue for unit tests (inproc.py).

Delivery contract: at least once to the queue, at most once to one receiver's application (dedup by
message id), leased until acked; a receiver that dies or stays silent loses its leases and the
items go to another receiver. Make each downstream message id a function of the input's id (e.g.
trajectory id = prompt item id) so a redelivered item's output is deduped at the next queue.
"""

import itertools
import threading
import uuid
from abc import ABC, abstractmethod
from typing import Any, Self, Sequence

import msgspec

from rollspec.transport import native
from rollspec.transport.dedup import run_counter
from rollspec.transport.stats import ConsumerStats, ProducerStats


class Delivery(msgspec.Struct, frozen=True, gc=False):
    """One item handed to the application; ack it when its effects are durable downstream.

    Not tracked by the cyclic garbage collector (gc=False): one is built per item on the hot path and
    the application holds it for a while, so as a tracked object (a named tuple, before) it was
    promoted to the oldest generation and set off full collections that walk the whole process (all of
    torch's objects): ~1.5 us of CPU per 1 KB item, more than decoding it. Its fields hold the item and
    plain values; never make a Delivery part of a reference cycle (e.g. stored inside its own item), as
    the collector would not free that cycle."""

    msg_id: str
    item: Any
    attempt: int
    """1 on first delivery; higher after redelivery (lease expiry, loss in transit)."""
    token: int
    """segment << 32 | index of the lease; opaque to the application."""


def make_token(segment: int, index: int) -> int:
    """Pack a lease's (segment, index) into one int."""
    return segment << 32 | index


def split_token(token: int) -> tuple[int, int]:
    """Unpack make_token."""
    return token >> 32, token & 0xFFFFFFFF


class IdSource:
    """Unique message ids: a random endpoint prefix and a counter in hex (cheaper than a uuid per message)."""

    def __init__(self) -> None:
        self._prefix = uuid.uuid4().hex[:16]
        self._head = f"{self._prefix}-"
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._make = native.hex_ids()  # in C where the extension loads (~0.03 against ~0.17 us per id)

    def next(self) -> str:
        """A new id, unique across processes (random prefix) and within this one (counter)."""
        return self.take(1)[0]

    def take(self, n: int) -> list[str]:
        """n new ids (put_many's hot path): the counter advances by n. Hex digits: a shift per digit where
        decimal divides."""
        with self._lock:  # senders may be shared between threads: no two calls get the same range
            first = next(self._counter)
            self._counter = itertools.count(first + n)
        return self._make(self._head, first, n)

    def run_of(self, ids: list[str]) -> tuple[str, int]:
        """(prefix, first counter) of consecutive ids of this source (one take(), or a slice of one): the run they
        travel and dedup as. Every id is this source's prefix (ending in '-') and its counter in hex."""
        return self._head, run_counter(self._head, ids[0])  # type: ignore[return-value]


class Sender(ABC):
    """Puts items on one work queue. Blocks (up to a timeout) while the queue has no free capacity."""

    @abstractmethod
    def put(self, item: Any, *, msg_id: str | None = None, timeout_s: float = 60.0) -> str:
        """Send a schema instance; returns its message id (generated unless given). Raises
        BackPressureTimeout if no credit arrived within timeout_s, SchemaError if it cannot be encoded.
        An explicit msg_id is an idempotency key: the queue drops a second item with the same id."""

    def put_many(self, items: Sequence[Any], *, msg_ids: Sequence[str] | None = None,
                 timeout_s: float = 60.0) -> list[str]:
        """put() each item (with msg_ids[i] if given); implementations batch the locking and waking.
        On BackPressureTimeout the items before the one that timed out were sent."""
        ids = msg_ids if msg_ids is not None else [None] * len(items)
        return [self.put(item, msg_id=msg_id, timeout_s=timeout_s) for item, msg_id in zip(items, ids)]

    @abstractmethod
    def flush(self, timeout_s: float = 60.0) -> bool:
        """Wait until the queue has confirmed every item put so far; False on timeout."""

    @abstractmethod
    def stats(self) -> ProducerStats:
        """Counters snapshot."""

    @abstractmethod
    def close(self, timeout_s: float = 5.0) -> None:
        """Flush (up to timeout_s) and detach."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Receiver(ABC):
    """Takes items from one work queue under a lease; each item must be acked once processed."""

    @abstractmethod
    def get(self, timeout_s: float) -> Delivery | None:
        """Next item, or None after timeout_s. Undecodable items are rejected (counted, logged, reported
        to the queue as dropped) and skipped; they are never returned."""

    @abstractmethod
    def get_batch(self, max_items: int, timeout_s: float) -> list[Delivery]:
        """Up to max_items already-received items; waits up to timeout_s only while there are none."""

    @abstractmethod
    def ack(self, delivery: Delivery) -> None:
        """Mark the item done: the queue will not deliver it again and its slot frees up."""

    def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """ack() each delivery (implementations may do it in one step)."""
        for delivery in deliveries:
            self.ack(delivery)

    @abstractmethod
    def stats(self) -> ConsumerStats:
        """Counters snapshot."""

    @abstractmethod
    def close(self, timeout_s: float = 5.0) -> None:
        """Send pending acks (up to timeout_s) and detach; un-acked items go back to the queue now."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
