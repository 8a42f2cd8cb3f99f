"""Time-fair step interleaving ("lockstep") of generation streams in one thread, for paired throughput ratios.

Whole runs one after another each meet their own machine: on the shared VM identical work moved by +-10-15% in
thread CPU between consecutive runs of 0.1-1 s (an SMT sibling's co-tenant, the shared cache). Here every contender
is a stream, and the loop always advances the stream that has used the least thread CPU so far by one step, so
drift on any scale above a few steps hits every stream alike.

A stream serves rounds of requests, as a rollout actor serves batch after batch: when its stepper runs dry it gets
the next round (`new_round`, untimed). Each stream's time is split into blocks of `block_s` thread-CPU seconds; a
step belongs to the block its stream's clock was in when the step began, so block j of every stream covers the same
stretch of wall time (within a step) and two streams' block j are a pair (bench/scheduler_stats.paired_ci).
Tokens are counted exactly, per step: the tokens of the completions it returned plus the change in the live rows'
generated tokens (a row's first token is sampled at its admission, inside a step).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Protocol, Sequence


class Stepper(Protocol):
    """What a stream steps: the engine's surface (rollspec.engine.engine.Engine)."""

    rows: Sequence  # live sequences, each with `num_generated`

    def has_unfinished(self) -> bool: ...

    def step(self) -> list: ...  # completions, each with `token_ids` (the generated ones)


@dataclasses.dataclass(frozen=True)
class Clocks:
    """The three clocks read around every step; tests pass fake ones."""

    thread: Callable[[], float] = time.thread_time
    wall: Callable[[], float] = time.perf_counter
    process: Callable[[], float] = time.process_time


@dataclasses.dataclass
class Block:
    """One stream's use of one block: steps begun in it, the tokens they emitted, rounds begun, their seconds of
    thread CPU, wall and process CPU, and the increments of the stream's counters over it."""

    tokens: int = 0
    steps: int = 0
    rounds: int = 0
    tcpu_s: float = 0.0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    counters: dict[str, float] = dataclasses.field(default_factory=dict)

    def rates(self) -> dict[str, float]:
        """Tokens per wall, process-CPU and thread-CPU second (bench/scheduler.py's units)."""
        return {"tokens_per_s": self.tokens / self.wall_s, "tokens_per_cpu_s": self.tokens / self.cpu_s,
                "tokens_per_tcpu_s": self.tokens / self.tcpu_s}


class Stream:
    """One contender: `new_round()` returns a stepper holding the next round's requests (the same engine refilled,
    or a new one); `counters()` returns running totals (e.g. a depth policy's steps by k), recorded per block as
    increments."""

    def __init__(self, name: str, new_round: Callable[[], Stepper],
                 counters: Callable[[], dict[str, float]] = dict) -> None:
        self.name = name
        self.new_round = new_round
        self.counters = counters
        self.stepper: Stepper | None = None
        self.used_s = 0.0  # thread CPU of its steps: what the loop keeps level
        self.blocks: list[Block] = []
        self._live_tokens = 0  # generated tokens of the stepper's live rows after the last step
        self._mark: dict[str, float] = {}  # counters when the open block began

    def restart_clock(self) -> None:
        """Forget the blocks so far (an untimed warm-up): the stream goes on mid-round with a fresh clock."""
        self.used_s, self.blocks = 0.0, []

    def advance(self, block_s: float, clocks: Clocks) -> None:
        """One step, refilling first if the stepper has run dry, charged to the block the clock is in."""
        rounds = 0
        if self.stepper is None or not self.stepper.has_unfinished():
            self.stepper, rounds = self.new_round(), 1
            self._live_tokens = _live_tokens(self.stepper)
        block = self._block(int(self.used_s // block_s))
        wall, cpu, tcpu = clocks.wall(), clocks.process(), clocks.thread()
        finished = self.stepper.step()
        tcpu, cpu, wall = clocks.thread() - tcpu, clocks.process() - cpu, clocks.wall() - wall
        live = _live_tokens(self.stepper)
        block.tokens += live - self._live_tokens + sum(len(c.token_ids) for c in finished)
        self._live_tokens = live
        block.steps += 1
        block.rounds += rounds
        block.tcpu_s += tcpu
        block.wall_s += wall
        block.cpu_s += cpu
        self.used_s += tcpu

    def close_block(self) -> None:
        """Record the open block's counter increments (again, if it gets more steps later)."""
        if self.blocks:
            now = self.counters()
            self.blocks[-1].counters = {key: value - self._mark.get(key, 0) for key, value in now.items()}

    def _block(self, index: int) -> Block:
        if index >= len(self.blocks):
            self.close_block()
            self._mark = self.counters()
            # A step longer than a block leaves the blocks it jumped over empty (never on the bench's settings).
            self.blocks.extend(Block() for _ in range(index + 1 - len(self.blocks)))
        return self.blocks[index]


def _live_tokens(stepper: Stepper) -> int:
    return sum(row.num_generated for row in stepper.rows)


def run_lockstep(streams: list[Stream], until_s: float, block_s: float, clocks: Clocks = Clocks()) -> None:
    """Advance `streams` one step at a time, always the one that has used the least thread CPU (the first of a tie),
    until each has used `until_s` (it stops within one step of it). Called again with a later `until_s` on some of
    them (focus), those go on where they were: their blocks stay aligned with the others' earlier ones."""
    if block_s <= 0 or until_s < 0:
        raise ValueError(f"run_lockstep needs block_s > 0 and until_s >= 0, got {block_s}, {until_s}")
    active = [s for s in streams if s.used_s < until_s]
    while active:
        stream = min(active, key=lambda s: s.used_s)
        stream.advance(block_s, clocks)
        if stream.used_s >= until_s:
            active.remove(stream)
    for stream in streams:
        stream.close_block()


def warm_up(streams: list[Stream], seconds: float, clocks: Clocks = Clocks()) -> None:
    """Untimed steps of every stream in lockstep for `seconds` each (first-touch of caches, drafters' lazy set-up),
    then every clock restarted: the timed blocks begin mid-round, where the warm-up left each stream."""
    run_lockstep(streams, until_s=seconds, block_s=seconds, clocks=clocks)
    for stream in streams:
        stream.restart_clock()
