"""Steps of steady speculation kept as plain lists until the depth scheduler next needs them (DepthScheduler.observe).

While a speculative choice stands at one (batch size, k) nothing these steps teach can change a decision: the
engine is told the standing k without a plan (StandingChoice.holds), and the next plan reads the estimates
only after folding these steps in. Their full path (a decision record, an acceptance update in numpy, the
cost model, the realized check, probe clocks, the totals) cost ~85 us a step inside the engine on the zoo at
B = 1 (EAGLE, k = 3-4, a step of ~1.2 ms); kept here a step costs a few list appends.
"""

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rollspec.scheduler.catch_up import CatchUpCost
from rollspec.scheduler.decision import DepthDecision, DepthStats
from rollspec.scheduler.standing import StandingChoice


@dataclass(frozen=True, slots=True)
class SteadySteps:
    """Steps at `batch_size` rows and depth `k`, numbered `step_numbers` (consecutive but for a response's first steps
    between them: fresh.FirstSteps): per step the rows' accepted drafts, the catch-up width offered, and the drafting
    and verify seconds."""

    step_numbers: list[int]
    batch_size: int
    k: int
    num_accepted: list[list[int]]
    catch_up_tokens: list[int]
    draft_s: list[float]
    target_s: list[float]

    def __len__(self) -> int:
        return len(self.draft_s)

    @property
    def first_step(self) -> int:
        """The first step of a consecutive run as long as this one, ending at its last step: what the clocks that fold
        a run (realized check, realized gain) read only the end of."""
        return self.step_numbers[-1] - len(self.step_numbers) + 1

    def records(self, expected_k: float, predicted_s: list[float], catch_up_s: list[float]) -> list[DepthDecision]:
        """The steps' decision records, given E[tokens | k] they were planned with and each one's predicted step time
        and catch-up time."""
        b, k = self.batch_size, self.k
        return [DepthDecision(step=step, batch_size=b, k=k, is_probe=False, catch_up_tokens=width,
                              predicted_tokens=b * expected_k, predicted_catch_up_s=catch_up,
                              predicted_step_s=predicted + catch_up, realized_tokens=int(sum(accepted)) + b,
                              realized_step_s=draft + target)
                for step, accepted, width, predicted, catch_up, draft, target in zip(
                    self.step_numbers, self.num_accepted, self.catch_up_tokens, predicted_s, catch_up_s, self.draft_s,
                    self.target_s)]


class CatchUpSplit:
    """catch_up.observe_step_costs's split of kept steps' drafting time, step by step inside CostModel.observe_steady:
    the predicted catch-up beyond a steady step's width (recorded), and what the catch-up model learns. Called only
    for the steps with an excess width (the others' catch-up is 0 and their drafting time is learned as it is)."""

    def __init__(self, catch_up: CatchUpCost, steps: SteadySteps) -> None:
        self._catch_up, self._batch_size = catch_up, steps.batch_size
        k = steps.k
        self.excess = [width - k - 1 if width > k + 1 else 0 for width in steps.catch_up_tokens]
        self.catch_up_s = [0.0] * len(self.excess)

    def __call__(self, i: int, drafting_s: float, draft_time_s: float) -> float:
        excess = self.excess[i]
        catch_up_s = self.catch_up_s[i] = self._catch_up.catch_up_s(self._batch_size, excess)  # its price is memoized
        if catch_up_s > 0 and catch_up_s >= drafting_s:
            self._catch_up.observe(self._batch_size, excess, draft_time_s - drafting_s)
            return drafting_s
        return max(0.0, draft_time_s - catch_up_s)


@dataclass(frozen=True, slots=True)
class SteadyRecords:
    """Folded steady steps as the decision log keeps them: records built when read."""

    steps: SteadySteps
    expected_k: float
    predicted_s: list[float]  # the step at k, before its catch-up
    catch_up_s: list[float]

    def decisions(self) -> list[DepthDecision]:
        return self.steps.records(self.expected_k, self.predicted_s, self.catch_up_s)

    def add_to(self, stats: DepthStats) -> None:
        """Count the steps in `stats` as DepthStats.add would one by one."""
        s, b = self.steps, self.steps.batch_size
        stats.add_steady_run(b, s.k, [int(sum(accepted)) + b for accepted in s.num_accepted], b * self.expected_k,
                             [p + c for p, c in zip(self.predicted_s, self.catch_up_s)],
                             [draft + target for draft, target in zip(s.draft_s, s.target_s)])


class SteadyRun:
    """The steady steps not yet folded in (at most one standing choice's: a plan folds them first)."""

    def __init__(self) -> None:
        # A tuple a step (step, accepted, catch-up width, draft s, target s): five appends were ~2.3 us in the engine.
        self._rows: list[tuple[int, list[int], int, float, float]] = []
        self._batch_size = 0
        self._k = 0

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, step: int, batch_size: int, k: int, num_accepted: list[int], catch_up_tokens: int,
            draft_s: float, target_s: float) -> None:
        """Keep one step; every step kept until `take` is at the first one's batch size and k (one standing choice's:
        `continues`)."""
        if not self._rows:
            self._batch_size, self._k = batch_size, k
        self._rows.append((step, num_accepted, catch_up_tokens, draft_s, target_s))

    def continues(self, reuse: StandingChoice | None, batch_size: int, k: int, last_k: int, last_batch_size: int,
                  can_keep: bool) -> bool:
        """Whether a step at k > 0 is steady speculation, kept here: the standing choice's (B, k) after a step at the
        same (`last_k`, `last_batch_size`), where the scheduler `can_keep` (a cost model that folds runs, not a probe).
        It moves no decision before the next plan, which folds it in."""
        return (can_keep and reuse is not None and reuse.k == k == last_k
                and reuse.batch_size == batch_size == last_batch_size)

    def take(self) -> SteadySteps:
        """The steps kept so far, now handed over."""
        steps = self.pending()
        self._rows = []
        return steps

    def pending_records(self, fold: Callable[..., list[float]], catch_up: CatchUpCost,
                        expected: Sequence[float]) -> SteadyRecords:
        """The steps not yet folded in as records, their predictions read from `fold` (CostModel.observe_steady)
        without applying it and from a copy of `catch_up`, E[tokens | k] from `expected`: a view, nothing changes."""
        steps = self.pending()
        split = CatchUpSplit(copy.deepcopy(catch_up), steps)
        predicted_s = fold(steps.batch_size, steps.k, steps.draft_s, steps.target_s, split=split, apply=False)
        return SteadyRecords(steps, float(expected[steps.k]), predicted_s, split.catch_up_s)

    def pending(self) -> SteadySteps:
        """The same without handing them over: safe to call from another thread than the one observing."""
        rows = list(self._rows)
        columns = [list(column) for column in zip(*rows)] if rows else [[], [], [], [], []]
        step_numbers, accepted, catch_up, draft_s, target_s = columns
        return SteadySteps(step_numbers, self._batch_size, self._k, accepted, catch_up, draft_s, target_s)
