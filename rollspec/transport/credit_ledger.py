"""Cumulative credit for remote producers of one queue.

A producer numbers its new items 1, 2, 3, ... and may send item `seq` only once the broker has
granted seq <= granted. Grants are cumulative totals, not increments, so a lost, duplicated or
reordered credit message is harmless: the producer keeps the largest total it has seen, and every
later PutAck or heartbeat reply repeats the current one.
"""

from dataclasses import dataclass
from typing import Hashable


@dataclass(slots=True, eq=False)
class ProducerState:
    """One producer: its window, cumulative grant and highest sequence number received."""

    key: Hashable
    window: int
    last_seen: float
    granted: int = 0
    max_seq: int = 0

    @property
    def outstanding(self) -> int:
        """Credit granted but not yet used: slots reserved in the queue for this producer."""
        return max(0, self.granted - self.max_seq)


class CreditLedger:
    """Grants producers credit out of the queue's free capacity; not thread-safe (broker I/O thread)."""

    def __init__(self) -> None:
        self._producers: dict[Hashable, ProducerState] = {}

    def touch(self, key: Hashable, window: int, now: float) -> ProducerState:
        """Register a producer or refresh its liveness and window."""
        producer = self._producers.get(key)
        if producer is None:
            producer = self._producers[key] = ProducerState(key, window, now)
        producer.window, producer.last_seen = window, now
        return producer

    def on_items(self, producer: ProducerState, max_seq: int) -> None:
        """The producer has sent items up to `max_seq` (their slots are now in the queue itself)."""
        producer.max_seq = max(producer.max_seq, max_seq)
        producer.granted = max(producer.granted, producer.max_seq)

    def reserved(self) -> int:
        """Slots promised to producers and not yet used."""
        return sum(p.outstanding for p in self._producers.values())

    def top_up(self, free: int) -> list[ProducerState]:
        """Grant free slots to producers below half their window; returns those whose grant grew.
        The half-window hysteresis keeps credit messages to one per half window of items."""
        changed = []
        for producer in self._producers.values():
            if free <= 0:
                break
            want = producer.window - producer.outstanding
            if want * 2 < producer.window:
                continue
            give = min(want, free)
            producer.granted += give
            free -= give
            changed.append(producer)
        return changed

    def remove(self, key: Hashable) -> None:
        """Forget a producer (detached or silent); its reserved slots return to the pool."""
        self._producers.pop(key, None)

    def reap(self, now: float, timeout_s: float) -> None:
        """Forget producers silent for timeout_s."""
        for key in [k for k, p in self._producers.items() if now - p.last_seen > timeout_s]:
            del self._producers[key]

    def __len__(self) -> int:
        return len(self._producers)
