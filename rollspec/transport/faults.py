"""Seeded fault injection on outbound messages: drop, delay, duplicate, reorder, corrupt.

Every endpoint sends through a FaultInjector, so tests and chaos/ turn faults on by passing a
FaultPlan; with the default plan the injector is a straight call to the socket. Routing frames (the
ROUTER identity) are never corrupted: faults model a lossy, noisy link, not a misaddressed one.
"""

import heapq
import itertools
import random
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from rollspec.transport.errors import ConfigError

SendFn = Callable[[list[Any]], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultPlan:
    """Per-message fault probabilities, applied independently in the order corrupt, drop, duplicate,
    then (per copy) delay or reorder. Same seed and same message sequence -> same faults."""

    seed: int = 0
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    """Hold the message back and send it right after the next one (or after max_delay_s)."""
    delay: float = 0.0
    max_delay_s: float = 0.02
    corrupt: float = 0.0
    """Flip one random bit of one random payload frame."""

    def __post_init__(self) -> None:
        for name in ("drop", "duplicate", "reorder", "delay", "corrupt"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"FaultPlan.{name}", value, "a probability in [0, 1]")
        if self.max_delay_s < 0:
            raise ConfigError("FaultPlan.max_delay_s", self.max_delay_s, ">= 0")

    @property
    def is_active(self) -> bool:
        """Whether any fault has a non-zero probability."""
        return any((self.drop, self.duplicate, self.reorder, self.delay, self.corrupt))

    def derive(self, salt: int) -> "FaultPlan":
        """Same probabilities, different random stream (one per process or endpoint)."""
        return FaultPlan(seed=self.seed * 1_000_003 + salt, drop=self.drop, duplicate=self.duplicate,
                         reorder=self.reorder, delay=self.delay, max_delay_s=self.max_delay_s, corrupt=self.corrupt)


    def for_endpoint(self, name: str) -> "FaultPlan":
        """This plan's own stream for the endpoint called `name` (e.g. "rollout-0/prompts"), so that
        endpoints sharing one plan do not fail in lockstep; an inactive plan stays as it is."""
        return self.derive(zlib.crc32(name.encode())) if self.is_active else self


NO_FAULTS = FaultPlan()


@dataclass(slots=True)
class FaultCounts:
    """How many messages each fault touched."""

    sent: int = 0
    dropped: int = 0
    duplicated: int = 0
    delayed: int = 0
    reordered: int = 0
    corrupted: int = 0

    def as_dict(self) -> dict[str, int]:
        """Counts as a plain dict (for metrics)."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class FaultInjector:
    """Applies a FaultPlan to messages on their way to `send`. Not thread-safe: owned by one I/O thread,
    which calls `release_due` from its loop so delayed and held-back messages go out on time."""

    plan: FaultPlan
    routing_frames: int = 0
    counts: FaultCounts = field(default_factory=FaultCounts)
    _rng: random.Random = field(init=False)
    _delayed: list[tuple[float, int, list[Any]]] = field(default_factory=list)
    _held: tuple[float, list[Any]] | None = None
    _order: "itertools.count[int]" = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.plan.seed)

    def send(self, frames: list[Any], send: SendFn, now: float) -> None:
        """Send `frames` through `send`, subject to the plan."""
        if not self.plan.is_active:
            self.counts.sent += 1
            send(frames)
            return
        plan, rng = self.plan, self._rng
        if plan.corrupt and rng.random() < plan.corrupt:
            frames = self._corrupted(frames)
        if plan.drop and rng.random() < plan.drop:
            self.counts.dropped += 1
            return
        copies = 1
        if plan.duplicate and rng.random() < plan.duplicate:
            copies = 2
            self.counts.duplicated += 1
        for _ in range(copies):
            if plan.delay and rng.random() < plan.delay:
                self.counts.delayed += 1
                heapq.heappush(self._delayed, (now + rng.uniform(0, plan.max_delay_s), next(self._order), frames))
            elif plan.reorder and self._held is None and rng.random() < plan.reorder:
                self.counts.reordered += 1
                self._held = (now + plan.max_delay_s, frames)
            else:
                self._emit(frames, send)
                if self._held is not None:
                    held, self._held = self._held[1], None
                    self._emit(held, send)

    def release_due(self, send: SendFn, now: float) -> float | None:
        """Send every delayed / held message whose time has come; return the next due time, if any."""
        while self._delayed and self._delayed[0][0] <= now:
            self._emit(heapq.heappop(self._delayed)[2], send)
        if self._held is not None and self._held[0] <= now:
            held, self._held = self._held[1], None
            self._emit(held, send)
        due = [t for t in (self._delayed[0][0] if self._delayed else None, self._held and self._held[0]) if t]
        return min(due) if due else None

    def flush(self, send: SendFn) -> None:
        """Send everything still held back (used on close so no message is silently swallowed)."""
        while self._delayed:
            self._emit(heapq.heappop(self._delayed)[2], send)
        if self._held is not None:
            held, self._held = self._held[1], None
            self._emit(held, send)

    def _emit(self, frames: list[Any], send: SendFn) -> None:
        self.counts.sent += 1
        send(frames)

    def _corrupted(self, frames: Sequence[Any]) -> list[Any]:
        candidates = [i for i in range(self.routing_frames, len(frames)) if memoryview(frames[i]).nbytes]
        if not candidates:
            return list(frames)
        index = self._rng.choice(candidates)
        damaged = bytearray(frames[index])
        damaged[self._rng.randrange(len(damaged))] ^= 1 << self._rng.randrange(8)
        self.counts.corrupted += 1
        return [*frames[:index], damaged, *frames[index + 1:]]
