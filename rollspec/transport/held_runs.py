"""What a consumer holds of whole parcels of generated ids: per parcel, its run and one acked flag per item, in
place of one `held` dict entry per id (an insert at intake and a pop at ack, each hashing a fresh string).

Only parcels of at least MIN_ITEMS items are kept here, so that the overlap test of a new parcel against those
held (a scan of the ones sharing its prefix) stays short; smaller ones, and ids written out, stay in the dict.
"""

from operator import lt

from rollspec.transport.dedup import run_counter

MIN_ITEMS = 16
_LOW = 0xFFFFFFFF


class HeldRun:
    """Parcel `parcel`: items prefix + '%x' % (first + i) at index i, i < len(acked); acked[i] once acked."""

    __slots__ = ("parcel", "prefix", "first", "acked", "open")

    def __init__(self, parcel: int, prefix: str, first: int, count: int) -> None:
        self.parcel, self.prefix, self.first = parcel, prefix, first
        self.acked = bytearray(count)
        self.open = count


class HeldRuns:
    """The held run parcels of one consumer (guarded by its lock)."""

    def __init__(self) -> None:
        self.parcels: dict[int, HeldRun] = {}
        self._by_prefix: dict[str, list[HeldRun]] = {}
        self.count = 0  # items held (not acked) in all of them

    def add(self, parcel: int, prefix: str, first: int, count: int) -> None:
        """Hold a whole parcel (the caller checked that none of its ids is held or done)."""
        held = self.parcels[parcel] = HeldRun(parcel, prefix, first, count)
        self._by_prefix.setdefault(prefix, []).append(held)
        self.count += count

    def overlaps(self, prefix: str, first: int, stop: int) -> bool:
        """Whether a held parcel's run meets ids prefix + '%x' % k, first <= k < stop (acked items included:
        a caller that must be exact tests those one by one)."""
        return any(held.first < stop and first < held.first + len(held.acked)
                   for held in self._by_prefix.get(prefix, ()))

    def __contains__(self, msg_id: str) -> bool:
        """Whether msg_id is held here and not acked."""
        prefix = msg_id[:msg_id.rfind("-") + 1]
        runs = self._by_prefix.get(prefix)
        k = run_counter(prefix, msg_id) if runs else None
        if k is None:
            return False
        for held in runs:  # type: ignore[union-attr]
            i = k - held.first
            if 0 <= i < len(held.acked) and not held.acked[i]:
                return True
        return False

    def take(self, tokens: list[int], start: int, stop: int) -> bool:
        """Mark acked the items of tokens[start:stop], all of one held parcel, in index order, none acked before;
        False, with nothing changed, if that is not so (the caller takes them one by one)."""
        first, last = tokens[start], tokens[stop - 1]
        held = self.parcels.get(first >> 32)
        lo, hi = first & _LOW, (last & _LOW) + 1
        if held is None or last >> 32 != first >> 32 or hi - lo != stop - start or hi > len(held.acked) \
                or held.acked.find(1, lo, hi) != -1 \
                or not all(map(lt, tokens[start:stop - 1], tokens[start + 1:stop])):  # increasing: each index once
            return False
        held.acked[lo:hi] = b"\x01" * (hi - lo)
        self._settle(held, hi - lo)
        return True

    def take_one(self, token: int) -> bool:
        """Mark one item acked; False if it is not held here (acked before, or of another parcel)."""
        held = self.parcels.get(token >> 32)
        i = token & _LOW
        if held is None or i >= len(held.acked) or held.acked[i]:
            return False
        held.acked[i] = 1
        self._settle(held, 1)
        return True

    def open_items(self) -> list[tuple[int, int]]:
        """(parcel, index) of every held item not yet acked (for heartbeats)."""
        return [(held.parcel, i) for held in self.parcels.values() for i, flag in enumerate(held.acked) if not flag]

    def _settle(self, held: HeldRun, count: int) -> None:
        held.open -= count
        self.count -= count
        if held.open == 0:
            del self.parcels[held.parcel]
            runs = self._by_prefix[held.prefix]
            runs.remove(held)
            if not runs:
                del self._by_prefix[held.prefix]
