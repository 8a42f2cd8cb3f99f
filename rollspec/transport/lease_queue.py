"""Work-queue core: ingress dedup, credit-bounded leases, acks and redelivery. Pure logic, no I/O.

Items arrive in segments (one producer batch) and are tracked per (segment, index). Each item is
READY (queued), DONE (acked, dropped or a duplicate) or leased to a consumer through a Parcel (the
items of one segment handed over in one delivery). A parcel is the unit of lease and ack: one ack
finishes all its items (ack_parcels; bulk work when it is intact), while single items can still be
acked, rejected or requeued on their own. Time is passed in, so tests drive it directly.

Invariant: every offered id that is not a duplicate ends DONE exactly once, either acked or recorded
in `dropped` with a reason; until then it is READY or leased, never both.
"""

import itertools
from collections import deque
from typing import Any, Callable, Hashable, Iterable, Iterator

from rollspec.transport.config import QueueConfig
from rollspec.transport.dedup import BoundedIds
from rollspec.transport.queue_records import ConsumerState, DroppedItem, Parcel, Segment, joined_run
from rollspec.transport.stats import QueueStats

__all__ = ["DONE", "READY", "ConsumerState", "DroppedItem", "LeaseQueue", "Parcel", "Segment"]

READY = 0
DONE = 1
_PLUS_ONE = (1).__add__  # attempts + 1 over a parcel in one C-level map


class LeaseQueue:
    """One work queue. Not thread-safe: the broker's I/O thread (or the in-process channel's lock) owns it."""

    def __init__(self, config: QueueConfig):
        self.config = config
        self.stats = QueueStats(name=config.name, capacity=config.capacity)
        self.dropped: deque[DroppedItem] = deque(maxlen=config.max_dropped_records)
        self._segments: dict[int, Segment] = {}
        self._ready: deque[tuple[Segment, list[int]]] = deque()
        self._consumers: dict[Hashable, ConsumerState] = {}
        self._turn = 0
        self._seen = BoundedIds(config.dedup_window)
        self._parcels: dict[int, Parcel] = {}  # until their segment is done: late parcel acks still resolve
        self._next_seg = 0
        self._next_parcel = 0
        # payloads -> (merged payload, how many) or None; set by the host (segments.coalesce_packed)
        self.coalesce: Callable[[Iterable[Any]], tuple[Any, int] | None] | None = None

    # --- producers -------------------------------------------------------------------------------
    @property
    def held(self) -> int:
        """Items the queue holds (ready + leased); capacity bounds this."""
        return self.stats.depth + self.stats.in_flight

    def offer(self, ids: list[str], sizes: list[int], payload: Any, run: tuple[str, int] | None = None) -> int:
        """Enqueue a segment; ids seen before are dropped as duplicates. Returns the number of new items.
        `run`: (prefix, first) if the ids are one generated run (see Segment.run), vouched for by the caller."""
        new = self._seen.add_many(ids) if run is None else self._seen.add_run(run[0], run[1], ids)
        if len(new) == len(ids):  # the common case: no id seen before, none twice
            state = [READY] * len(ids)
        else:
            state = [DONE] * len(ids)
            for i in new:
                state[i] = READY
        new = list(new)
        self.stats.duplicates_dropped += len(ids) - len(new)
        if new:
            segment = Segment(self._next_seg, ids, sizes, payload, state, [0] * len(ids), len(new),
                              run=run if len(new) == len(ids) else None)
            self._next_seg += 1
            self._segments[segment.seg_id] = segment
            self._ready.append((segment, new))
            self.stats.enqueued += len(new)
            self.stats.depth += len(new)
            self.stats.bytes_held += sum(sizes) if len(new) == len(ids) else sum([sizes[i] for i in new])
        return len(new)

    # --- consumers -------------------------------------------------------------------------------
    def touch(self, key: Hashable, now: float, window_items: int, window_bytes: int) -> ConsumerState:
        """Register a consumer or refresh its liveness and window."""
        consumer = self._consumers.get(key)
        if consumer is None:
            consumer = self._consumers[key] = ConsumerState(key, window_items, window_bytes, now)
            self.stats.consumers = len(self._consumers)
        consumer.last_seen, consumer.window_items, consumer.window_bytes = now, window_items, window_bytes
        return consumer

    def heard_from(self, key: Hashable, now: float) -> None:
        """Refresh a registered consumer's liveness (any message from it counts)."""
        consumer = self._consumers.get(key)
        if consumer is not None:
            consumer.last_seen = now

    def dispatch(self, now: float) -> list[Parcel]:
        """Lease ready items to consumers with room in their windows, round robin, redeliveries first."""
        out: list[Parcel] = []
        consumers = list(self._consumers.values())
        while self._ready and consumers:
            consumer = self._next_with_room(consumers)
            if consumer is None:
                break
            segment, indices = self._ready[0]
            state = segment.state
            if len(indices) == len(state) and state.count(READY) == len(state):  # a fresh segment: one C pass
                if self.coalesce is not None and len(self._ready) > 1:
                    segment = self._coalesce_head(segment)
                    state = segment.state
                live = indices = self._ready[0][1]
            else:
                live = [i for i in indices if state[i] is READY]
            take, nbytes = self._fit(consumer, segment, live)
            if live and not take:  # its byte window cannot fit the next item: skip it this round
                consumers.remove(consumer)
                continue
            if len(take) == len(live):
                self._ready.popleft()
            else:
                self._ready[0] = (segment, live[len(take):])
            if take:
                out.append(self._lease(consumer, segment, take, nbytes, now))
        return out

    def can_dispatch(self) -> bool:
        """Whether dispatch() would lease something now: a consumer has room for the next ready item
        (dispatch's own test, so a caller waiting on it never spins). Drops ready entries whose items
        were all finished meanwhile, as dispatch would."""
        ready = self._ready
        while ready:
            segment, indices = ready[0]
            state = segment.state
            size = next((segment.sizes[i] for i in indices if state[i] is READY), None)
            if size is not None:
                return any(c.items_out < c.window_items and c.bytes_out < c.window_bytes
                           and (c.bytes_out == 0 or c.bytes_out + size <= c.window_bytes)
                           for c in self._consumers.values())
            ready.popleft()
        return False

    def ack_parcels(self, key: Hashable, seqs: list[int]) -> None:
        """Mark every item of these parcels done (the consumer finished them all). An intact parcel
        (all its items still leased under it) is settled in bulk; otherwise its items not yet done are
        acked one by one, as ack() would, wherever their lease has moved since."""
        for seq in seqs:
            parcel = self._parcels.get(seq)
            if parcel is None:
                self.stats.duplicate_acks += 1
                continue
            if parcel.open == len(parcel.indices):
                self._ack_intact(parcel)
                continue
            state, seg_id = parcel.segment.state, parcel.segment.seg_id
            pairs = [n for i in parcel.indices if state[i] is not DONE for n in (seg_id, i)]
            if pairs:
                self.ack(key, pairs)
            else:
                self.stats.duplicate_acks += 1

    def ack(self, key: Hashable, pairs: list[int], reasons: list[str] | None = None) -> None:
        """Mark flat (segment, index) pairs done: acked, or dropped with reasons[k] if reasons is given.
        Acks from a consumer whose lease was already moved are honoured (the work was done)."""
        segments, stats = self._segments, self.stats
        for k in range(0, len(pairs), 2):
            segment = segments.get(pairs[k])
            index = pairs[k + 1]
            if segment is None or index >= len(segment.state) or segment.state[index] is DONE:
                stats.duplicate_acks += 1
                continue
            state = segment.state[index]
            if state is READY:
                stats.depth -= 1
            else:
                self._unlease(state, index)
            if reasons is None:
                stats.acked += 1
                self._finish(segment, index)
            else:
                self._drop(segment, index, f"rejected:{reasons[k // 2]}")

    def report_held(self, key: Hashable, held: set[tuple[int, int]], now: float) -> None:
        """A consumer's heartbeat lists what it holds: items leased to it long enough ago (lost_after_s)
        that it does not hold were lost in transit and are requeued."""
        consumer = self._consumers.get(key)
        if consumer is None:
            return
        for parcel in list(consumer.parcels.values()):
            if now - parcel.delivered_at <= self.config.lost_after_s:
                continue
            segment = parcel.segment
            lost = [i for i in parcel.indices if segment.state[i] is parcel and (segment.seg_id, i) not in held]
            if lost:
                self.stats.lost_in_transit += len(lost)
                self._requeue(parcel, lost)

    def release(self, key: Hashable) -> None:
        """Forget a consumer (clean detach or presumed dead); everything it holds is requeued now."""
        consumer = self._consumers.pop(key, None)
        if consumer is None:
            return
        for parcel in list(consumer.parcels.values()):
            self._requeue(parcel, [i for i in parcel.indices if parcel.segment.state[i] is parcel])
        self.stats.consumers = len(self._consumers)

    def expire(self, now: float) -> None:
        """Requeue the leases of consumers silent for lease_s, and of items held over max_hold_s."""
        for key, consumer in list(self._consumers.items()):
            if now - consumer.last_seen > self.config.lease_s:
                self.stats.lease_expired += consumer.items_out
                self.release(key)
                continue
            for parcel in list(consumer.parcels.values()):
                if now - parcel.delivered_at > self.config.max_hold_s:
                    indices = [i for i in parcel.indices if parcel.segment.state[i] is parcel]
                    self.stats.lease_expired += len(indices)
                    self._requeue(parcel, indices)

    def num_consumers(self) -> int:
        """Consumers currently registered (heard from within lease_s)."""
        return len(self._consumers)

    # --- internals -------------------------------------------------------------------------------
    def _coalesce_head(self, head: Segment) -> Segment:
        """Merge the fresh segments at the front of the ready queue into `head` (the first), as far as self.coalesce
        takes them: items keep ids, order and accounting; their (segment, index) changes before anyone saw it."""
        merged = self.coalesce(segment.payload for segment in self._fresh_run())  # type: ignore[misc]
        if merged is None or merged[1] < 2:
            return head
        run, head.payload = list(itertools.islice(self._ready, merged[1])), merged[0]
        for segment, _ in run[1:]:  # the entries of run[:-1] go; run[-1]'s becomes head's below
            self._ready.popleft()
            del self._segments[segment.seg_id]
        head.run = joined_run([segment for segment, _ in run])
        head.ids = [msg_id for segment, _ in run for msg_id in segment.ids]
        head.sizes = [size for segment, _ in run for size in segment.sizes]
        n = head.open = len(head.ids)
        head.state, head.attempts = [READY] * n, [0] * n
        self._ready[0] = (head, list(range(n)))
        return head

    def _next_with_room(self, consumers: list[ConsumerState]) -> ConsumerState | None:
        for step in range(len(consumers)):
            consumer = consumers[(self._turn + step) % len(consumers)]
            if consumer.items_out < consumer.window_items and consumer.bytes_out < consumer.window_bytes:
                self._turn = (self._turn + step + 1) % len(consumers)
                return consumer
        return None

    @staticmethod
    def _fit(consumer: ConsumerState, segment: Segment, live: list[int]) -> tuple[list[int], int]:
        """The prefix of `live` that fits the consumer's windows, and its bytes."""
        room_items = consumer.window_items - consumer.items_out
        room_bytes = consumer.window_bytes - consumer.bytes_out
        take, sizes = live[:room_items], segment.sizes
        if not take:
            return take, 0
        if take[-1] - take[0] + 1 == len(take):  # contiguous (the common case): summed in C
            total = sum(sizes[take[0]:take[-1] + 1])
        else:
            total = sum([sizes[i] for i in take])
        if total <= room_bytes:
            return take, total
        total = 0
        for n, i in enumerate(take):
            # An idle consumer takes one item even if it exceeds the whole window, or it never would.
            if total + sizes[i] > room_bytes and (n > 0 or consumer.bytes_out > 0):
                return take[:n], total
            total += sizes[i]
        return take, total

    def _lease(self, consumer: ConsumerState, segment: Segment, take: list[int], nbytes: int, now: float) -> Parcel:
        attempts, state, n = segment.attempts, segment.state, len(take)
        parcel = Parcel(self._next_parcel, segment, take, [], consumer, now, n, nbytes)
        if take[-1] - take[0] + 1 == n:  # contiguous: slice assignments
            first, stop = take[0], take[-1] + 1
            attempts[first:stop] = parcel.attempts = list(map(_PLUS_ONE, attempts[first:stop]))
            state[first:stop] = [parcel] * n
        else:
            for i in take:
                attempts[i] += 1
                state[i] = parcel
            parcel.attempts = [attempts[i] for i in take]
        self._next_parcel += 1
        self._parcels[parcel.seq] = parcel
        segment.parcel_seqs.append(parcel.seq)
        consumer.bytes_out += nbytes
        consumer.items_out += n
        consumer.parcels[parcel.seq] = parcel
        self.stats.depth -= n
        self.stats.in_flight += n
        self.stats.delivered += n
        if max(parcel.attempts) > 1:
            self.stats.redelivered += sum(1 for a in parcel.attempts if a > 1)
        return parcel

    def _ack_intact(self, parcel: Parcel) -> None:
        segment, indices, consumer, n = parcel.segment, parcel.indices, parcel.consumer, len(parcel.indices)
        if indices[-1] - indices[0] + 1 == n:
            segment.state[indices[0]:indices[-1] + 1] = [DONE] * n
        else:
            for i in indices:
                segment.state[i] = DONE
        parcel.open = 0
        consumer.items_out -= n
        consumer.bytes_out -= parcel.nbytes
        consumer.parcels.pop(parcel.seq, None)
        self.stats.in_flight -= n
        self.stats.acked += n
        self.stats.bytes_held -= parcel.nbytes
        segment.open -= n
        if segment.open == 0:
            self._forget(segment)

    def _fresh_run(self) -> Iterator[Segment]:
        """The whole, never leased segments at the front of the ready queue (lazily: coalesce stops at its caps)."""
        for segment, indices in self._ready:
            if segment.parcel_seqs or len(indices) != len(segment.ids) or segment.open != len(segment.ids):
                return
            yield segment

    def _unlease(self, parcel: Parcel, index: int) -> None:
        consumer = parcel.consumer
        size = parcel.segment.sizes[index]
        parcel.open -= 1
        parcel.nbytes -= size
        consumer.items_out -= 1
        consumer.bytes_out -= size
        self.stats.in_flight -= 1
        if parcel.open == 0:
            consumer.parcels.pop(parcel.seq, None)

    def _requeue(self, parcel: Parcel, indices: list[int]) -> None:
        segment, again = parcel.segment, []
        for i in indices:
            self._unlease(parcel, i)
            if segment.attempts[i] >= self.config.max_attempts:
                self._drop(segment, i, "max_attempts")
            else:
                segment.state[i] = READY
                again.append(i)
        if again:
            self.stats.depth += len(again)
            self._ready.appendleft((segment, again))

    def _drop(self, segment: Segment, index: int, reason: str) -> None:
        self.dropped.append(DroppedItem(segment.ids[index], reason))
        self.stats.dropped[reason] = self.stats.dropped.get(reason, 0) + 1
        self._finish(segment, index)

    def _finish(self, segment: Segment, index: int) -> None:
        segment.state[index] = DONE
        segment.open -= 1
        self.stats.bytes_held -= segment.sizes[index]
        if segment.open == 0:
            self._forget(segment)

    def _forget(self, segment: Segment) -> None:
        del self._segments[segment.seg_id]
        for seq in segment.parcel_seqs:
            self._parcels.pop(seq, None)
