"""Bounded windows of recently seen message ids: duplicate detection at the queue's ingress (LeaseQueue) and of
acked ids at the consumer (ConsumerCore, inproc).

A sender's generated ids (channel.IdSource: a prefix ending in '-' and a hex counter) come in consecutive runs, and a
segment of them travels as one run (prefix, first, count). add_run() keeps such a batch as one range: one bisection
instead of a set insert per id. Other ids live in a set, as before; a window without runs pays nothing for them.
"""

from bisect import bisect_right, insort
from collections import deque
from collections.abc import Sequence

_HEX = "0123456789abcdef"
Run = tuple[str, int, int]  # (prefix, first, stop): the ids prefix + '%x' % k for first <= k < stop


def run_counter(prefix: str, msg_id: str) -> int | None:
    """k if msg_id is exactly prefix + '%x' % k (lower case, no leading zero, as IdSource writes it), else None."""
    if not msg_id.startswith(prefix):
        return None
    digits = msg_id[len(prefix):]
    if not digits or len(digits) > 16 or digits.strip(_HEX) or (digits[0] == "0" and len(digits) > 1):
        return None
    return int(digits, 16)


class BoundedIds:
    """Ids added recently, for duplicate detection with bounded memory: at least the last `capacity`, at most
    `capacity` plus one batch. Forgotten a whole batch (one add_many / add_run) at a time: a set difference in C
    instead of a Python step per id once the window is full. An id is held iff it is in `ids` or in a stored run
    (the two never share an id)."""

    def __init__(self, capacity: int) -> None:
        self.ids: set[str] = set()
        """Read-only for callers; ids added one by one (not as a run). Test membership with `in`."""
        self._runs: dict[str, tuple[list[int], list[int]]] = {}  # prefix -> (starts, stops): sorted, disjoint
        self._batches: deque[list[str] | Run] = deque()
        self._size = 0  # ids in _batches
        self._capacity = capacity

    def add(self, msg_id: str) -> None:
        """Remember msg_id."""
        if msg_id not in self:
            self.ids.add(msg_id)
            self._push([msg_id], 1)

    def add_many(self, msg_ids: list[str]) -> Sequence[int]:
        """add() each id, as one batch; returns the indices of the ids added (not held before; the first of a
        repeat). The common case (all new, none twice: ack_many's and the queue's ingress hot path) in two C passes
        over the list: membership, then an update whose growth shows a repeat inside the batch."""
        ids = self.ids
        if ids.isdisjoint(msg_ids) and not (self._runs and self._any_in_runs(msg_ids)):
            before = len(ids)
            ids.update(msg_ids)
            if len(ids) - before == len(msg_ids):
                self._push(msg_ids, len(msg_ids))
                return range(len(msg_ids))
            ids.difference_update(msg_ids)  # a repeat inside the batch: none was here before, so undo all
        new = []
        for i, msg_id in enumerate(msg_ids):
            if msg_id not in self:
                ids.add(msg_id)
                new.append(i)
        if new:
            self._push([msg_ids[i] for i in new], len(new))
        return new

    def add_absent(self, msg_ids: list[str]) -> None:
        """add_many() of ids the caller knows are not held here (a consumer's acked ids: each was held until this
        ack, and held ids are never in the window): one C pass fewer. A repeat inside the batch is undone as in
        add_many (sound only because none was here before) and the batch goes through add_many."""
        ids, before = self.ids, len(self.ids)
        ids.update(msg_ids)
        if len(ids) - before == len(msg_ids):
            self._push(msg_ids, len(msg_ids))
            return
        ids.difference_update(msg_ids)
        self.add_many(msg_ids)

    def add_run(self, prefix: str, first: int, msg_ids: list[str]) -> Sequence[int]:
        """add_many(msg_ids) for ids known to be prefix + '%x' % k, k = first, first + 1, ... (a generated run;
        the caller vouches for that, e.g. it made them or remade them from the wire). Kept as one range when no id
        of it is held: one bisection, plus one set pass only while the set holds ids. Else as add_many."""
        stop = first + len(msg_ids)
        if not msg_ids or not prefix.endswith("-") or self._overlaps(prefix, first, stop) \
                or (self.ids and not self.ids.isdisjoint(msg_ids)):
            return self.add_many(msg_ids)
        starts, stops = self._runs.setdefault(prefix, ([], []))
        if starts and first == stops[-1]:  # the next run of a sender (the common case): one range grows
            stops[-1] = stop
        elif not starts or first > stops[-1]:
            starts.append(first)
            stops.append(stop)
        else:
            insort(starts, first)
            insort(stops, stop)  # disjoint ranges: stops sort as their starts do
        self._push((prefix, first, stop), len(msg_ids))
        return range(len(msg_ids))

    def isdisjoint(self, msg_ids: list[str], run: tuple[str, int] | None = None) -> bool:
        """No id of msg_ids is held. `run`: (prefix, first) if they are that run (as in add_run): one bisection,
        plus one set pass only while the set holds ids."""
        if run is not None:
            return not self._overlaps(run[0], run[1], run[1] + len(msg_ids)) \
                and (not self.ids or self.ids.isdisjoint(msg_ids))
        return self.ids.isdisjoint(msg_ids) and not (self._runs and self._any_in_runs(msg_ids))

    def __contains__(self, msg_id: str) -> bool:
        return msg_id in self.ids or (bool(self._runs) and self._in_runs(msg_id))

    def __len__(self) -> int:
        return self._size

    def _in_runs(self, msg_id: str) -> bool:
        prefix = msg_id[:msg_id.rfind("-") + 1]  # a run's prefix ends with its last '-': hex digits have none
        if prefix not in self._runs:
            return False
        k = run_counter(prefix, msg_id)
        return k is not None and self._overlaps(prefix, k, k + 1)

    def _any_in_runs(self, msg_ids: list[str]) -> bool:
        return any(map(self._in_runs, msg_ids))

    def _overlaps(self, prefix: str, start: int, stop: int) -> bool:
        lists = self._runs.get(prefix)
        if lists is None:
            return False
        starts, stops = lists
        j = bisect_right(starts, stop - 1) - 1  # the last range starting before stop
        return j >= 0 and stops[j] > start

    def _push(self, batch: list[str] | Run, n: int) -> None:
        """Count a batch already stored; forget the oldest batches the rest still covers capacity without."""
        batches = self._batches
        batches.append(batch)
        self._size += n
        while self._size - _count(batches[0]) >= self._capacity:  # the rest still covers capacity
            oldest = batches.popleft()
            self._size -= _count(oldest)
            if type(oldest) is tuple:
                self._forget_run(*oldest)
            else:
                self.ids.difference_update(oldest)

    def _forget_run(self, prefix: str, first: int, stop: int) -> None:
        """Take the oldest stored run out of its range. Runs join a range only at its end (add_run) and are forgotten
        oldest first, so the oldest is its range's head: the range shrinks in place, or goes. (One range per run
        meant deleting the head of a list of ~16k ranges per run forgotten at a 1 << 20 window: 3-4 -> 9-11 us per
        64-id run.)"""
        starts, stops = self._runs[prefix]
        j = bisect_right(starts, first) - 1
        if stops[j] > stop:
            starts[j] = stop
            return
        del starts[j], stops[j]
        if not starts:
            del self._runs[prefix]


def _count(batch: list[str] | Run) -> int:
    return batch[2] - batch[1] if type(batch) is tuple else len(batch)
