"""Bounded windows of recently seen message ids: duplicate detection at the queue's ingress (LeaseQueue) and of
acked ids at the consumer (ConsumerCore, inproc)."""

from collections import deque
from collections.abc import Sequence


class BoundedIds:
    """Ids added recently, for duplicate detection with bounded memory: at least the last `capacity`, at most
    `capacity` plus one batch. Forgotten a whole batch (one add_many) at a time: a set difference in C
    instead of a Python step per id once the window is full."""

    def __init__(self, capacity: int) -> None:
        self.ids: set[str] = set()
        """Read-only for callers (membership tests on the hot path skip a method call)."""
        self._batches: deque[list[str]] = deque()
        self._size = 0  # ids in _batches (== len(ids))
        self._capacity = capacity

    def add(self, msg_id: str) -> None:
        """Remember msg_id."""
        if msg_id not in self.ids:
            self.ids.add(msg_id)
            self._push([msg_id])

    def add_many(self, msg_ids: list[str]) -> Sequence[int]:
        """add() each id, as one batch; returns the indices of the ids added (not held before; the first of a
        repeat). The common case (all new, none twice: ack_many's and the queue's ingress hot path) in two C passes
        over the list: membership, then an update whose growth shows a repeat inside the batch."""
        ids = self.ids
        if ids.isdisjoint(msg_ids):
            before = len(ids)
            ids.update(msg_ids)
            if len(ids) - before == len(msg_ids):
                self._push(msg_ids)
                return range(len(msg_ids))
            ids.difference_update(msg_ids)  # a repeat inside the batch: none was here before, so undo all
        new = []
        for i, msg_id in enumerate(msg_ids):
            if msg_id not in ids:
                ids.add(msg_id)
                new.append(i)
        if new:
            self._push([msg_ids[i] for i in new])
        return new

    def add_absent(self, msg_ids: list[str]) -> None:
        """add_many() of ids the caller knows are not held here (a consumer's acked ids: each was held until this
        ack, and held ids are never in the window): one C pass fewer. A repeat inside the batch is undone as in
        add_many (sound only because none was here before) and the batch goes through add_many."""
        ids, before = self.ids, len(self.ids)
        ids.update(msg_ids)
        if len(ids) - before == len(msg_ids):
            self._push(msg_ids)
            return
        ids.difference_update(msg_ids)
        self.add_many(msg_ids)

    def __contains__(self, msg_id: str) -> bool:
        return msg_id in self.ids

    def __len__(self) -> int:
        return self._size

    def _push(self, batch: list[str]) -> None:
        """Count a batch already added to `ids`; forget the oldest batches the rest still covers capacity without."""
        self._batches.append(batch)
        self._size += len(batch)
        batches = self._batches
        while self._size - len(batches[0]) >= self._capacity:  # the rest still covers capacity
            oldest = batches.popleft()
            self.ids.difference_update(oldest)
            self._size -= len(oldest)
