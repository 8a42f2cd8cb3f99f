"""A response's first speculative step at batch size 1, planned with its own acceptance (DepthScheduler's step 0).

At B = 1 a step either starts a response (the drafter catches up its whole prompt) or continues one, and the two
accept drafts very differently. On the zoo (the B = 1 workload, 6 seed sets, fixed k = 8) EAGLE's first steps
emitted 7.1 tokens a step (positions 1-3 accepted 0.98-1.0, 4-8 0.77-0.92) and later ones 3.7-4.4; the draft
model's 5.2 and 2.6-3.1. Pooled into one estimate, every depth is priced by a mix whose share of first steps grows
with k (EAGLE: 35% of steps at k = 4, 50% at k = 8), and the positions a shallow plan never drafts are read off
later steps: the warm plan settled at k = 5-7, where fixed k = 8 (the first steps' best) ran 5-10% faster.

So a first step (a catch-up wider than any steady step's, k_max + 1, while the plan speculates) runs at a depth
planned from an estimator fed by first steps alone, and the main estimate and the plan's greedy depth are left to
the steps that continue responses. The depth is the one that ends the response soonest, not the first step's own
best tokens/s: what a first step does not emit, the steps after it emit at the plan's rate for them, which is well
below a first step's. So it maximizes E_first[k] - r * c(k), r the plan's best tokens/s, c(k) the step's price. On the
zoo (EAGLE, B = 1) fixed-k first steps' own tokens/s were flat over k = 6-8 (4.66 / 4.75 / 4.81 tokens a ms) and
later steps emitted ~3.1 a ms. Ranked by its own rate (the rule before) a first step ran at 6-7 in some processes
(908 / 633 / 840 first steps at k = 6 / 7 / 8 in one) and the adaptive read 0.95 of fixed-8 there; ranked so, they
run at 8, and it read 0.986-0.999 of fixed-8 (1.001-1.048 of the rule before, paired in lockstep).

A first step is kept here and folded in with the steady steps around it (DepthScheduler._fold_steady): a full path
per first step (a fold of the steady steps before it, a record, the cost model) cost ~100 us a step at B = 1 on the
zoo, more than it gained. Its times teach nothing (a prompt's catch-up: the cold kind of step). At B > 1 a step's
rows mix both kinds and the scheduler sees no row's kind: nothing changes there.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby

import numpy as np
from numpy.typing import NDArray

from rollspec.scheduler.acceptance import AcceptanceEstimator
from rollspec.scheduler.config import DepthConfig
from rollspec.scheduler.decision import DepthDecision, DepthStats
from rollspec.scheduler.steady import SteadyRecords
from rollspec.scheduler.throughput import expected_token_list

# First steps between plans of their depth: a plan (~20 us in Python floats on a quiet loop) per first step was ~1% of
# a B = 1 step, and one every 4 first steps 117 us each inside the engine (EAGLE on the zoo), 14 us a step, ~0.7%.
# Their estimate moves over a half-life of 16 first steps: a plan every 16 follows it. After a start or a weight
# change the plans come after 1, 2, 4 and 8 first steps first: the estimate then rests on a few rows (planned every 16
# from the start, a cold scheduler ran its first 16 first steps at the prior's depth, k = 1-2, on the device of
# tests/unit/scheduler/test_first_steps.py).
REPLAN_FIRST_STEPS = 16


class FirstSteps:
    """The acceptance of a response's first speculative steps at B = 1, their depth, and the steps kept until folded
    (module doc)."""

    def __init__(self, config: DepthConfig) -> None:
        self._k_max, self._enabled, self._min_rows = config.k_max, config.plan_first_steps, config.min_evidence_rows
        self.acceptance = AcceptanceEstimator(config.k_max, config.acceptance)
        self.pending = False  # the step being chosen is a first step (set by `claims`, cleared by `keep`)
        self.prices: list[float] | None = None  # step costs at B = 1 for k = 0 .. k_max as of the last plan
        self._later_rate = 0.0  # the last plan's best tokens/s at B = 1: the rate of the steps after a first step
        self._k = config.k_max
        self._since_plan, self._replan = 0, 0  # first steps since the last plan, and between it and the next
        self._expected = expected_token_list(self.acceptance.planning_alpha_list(self._min_rows))
        # (step, k, accepted, catch-up width, seconds, planned E[tokens | k], planned seconds)
        self._kept: list[tuple[int, int, list[int], int, float, float, float]] = []
        self._num_counted = 0  # the kept steps already in the estimate (a plan counts them in before a fold)

    def __len__(self) -> int:
        return len(self._kept)

    def claims(self, batch_size: int, catch_up_tokens: int, *, speculating: bool) -> bool:
        """Whether the step being chosen is a first step this plan chooses for (then `pending` until kept)."""
        self.pending = (self._enabled and speculating and batch_size == 1 and catch_up_tokens > self._k_max + 1
                        and self.prices is not None)
        return self.pending

    def price(self, batch_size: int, step_s: list[float], rate: list[float]) -> None:
        """A plan at `batch_size` priced depths k = 0 .. k_max at `step_s` and predicted `rate` tokens/s at each (kept
        at B = 1: the best is what the steps after a first step emit at)."""
        if batch_size == 1:
            self.prices, self._later_rate = step_s, max(rate)

    def depth(self) -> int:
        """The depth k >= 1 that ends a response soonest from its first step: the most E_first[k] - r * c(k), with r
        the tokens/s of the steps after it (module doc). Re-planned every REPLAN_FIRST_STEPS first steps (sooner after
        a start or a weight change) at the prices and rate of the scheduler's last plan at B = 1 (`price`: what a plan
        read after folding the steps kept, so kept steps move no decision; the catch-up is paid at any k > 0: it ranks
        nothing)."""
        if self._since_plan >= self._replan:
            assert self.prices is not None  # `claims` holds only after a plan at B = 1
            self._fold()
            self._expected = expected_token_list(self.acceptance.planning_alpha_list(self._min_rows))
            rate, prices = self._later_rate, self.prices
            value = [tokens - rate * seconds for tokens, seconds in zip(self._expected, prices)]
            self._k, self._since_plan = max(range(1, self._k_max + 1), key=value.__getitem__), 0
            self._replan = min(REPLAN_FIRST_STEPS, 2 * self._replan or 1)
        return self._k

    def keep(self, step: int, k: int, num_accepted: Sequence[int] | NDArray[np.integer], catch_up_tokens: int,
             draft_s: float, target_s: float) -> None:
        """Keep the first step just verified (at depth k) until the next fold, with what it was planned at."""
        assert self.prices is not None  # planned with (`depth`)
        self.pending = False
        self._since_plan += 1
        self._kept.append((step, k, [int(n) for n in num_accepted], catch_up_tokens, draft_s + target_s,
                           float(self._expected[k]), float(self.prices[k])))

    def discount(self, keep: float) -> None:
        """Weights changed: the kept steps are counted in, all evidence weighs `keep` as much, the next plans re-plan."""
        self._fold()
        self.acceptance.discount(keep)
        self._since_plan = self._replan = 0

    def take(self, around: SteadyRecords | None = None) -> "FirstStepRecords":
        """The kept steps, now counted in the estimate, as records, with the steady steps' records `around` them."""
        records = self.records(around)
        self._fold()
        self._kept, self._num_counted = [], 0
        return records

    def records(self, around: SteadyRecords | None = None) -> "FirstStepRecords":
        """The kept steps as records, with the steady steps' `around` them (a view: nothing changes)."""
        return FirstStepRecords(self._kept, around)

    def _fold(self) -> None:
        """Count the kept steps not yet counted in the estimate, runs of one depth at a time (observe_steps: a numpy
        `observe` per step was ~20 us, a third of the scheduler's time per step at B = 1)."""
        for k, run in groupby(self._kept[self._num_counted:], key=lambda kept: kept[1]):
            self.acceptance.observe_steps(k, [accepted for _, _, accepted, *_ in run])
        self._num_counted = len(self._kept)


@dataclass(frozen=True, slots=True)
class FirstStepRecords:
    """First steps as kept (FirstSteps.keep's tuples), and the steady steps' records around them (`around`), in step
    order. Records are built when read: a record per first step cost ~3 us each inside a plan's fold, ~25 us a plan
    at B = 1 (EAGLE on the zoo), and nothing reads them per step."""

    first: list[tuple[int, int, list[int], int, float, float, float]]
    around: SteadyRecords | None = None

    def __len__(self) -> int:
        return len(self.first)

    def decisions(self) -> list[DepthDecision]:
        first = [DepthDecision(step=step, batch_size=1, k=k, is_probe=False, catch_up_tokens=width,
                               predicted_tokens=tokens, predicted_step_s=predicted_s,
                               realized_tokens=sum(accepted) + 1, realized_step_s=seconds)
                 for step, k, accepted, width, seconds, tokens, predicted_s in self.first]
        around = self.around.decisions() if self.around is not None else []
        return sorted(around + first, key=lambda decision: decision.step) if around else first

    def add_to(self, stats: DepthStats) -> None:
        """Count the steps in `stats` (the steady ones as their records would, then the first ones, each a run of one
        step at B = 1, as DepthStats.add would their records)."""
        if self.around is not None:
            self.around.add_to(stats)
        for _, k, accepted, _, seconds, tokens, predicted_s in self.first:
            stats.add_steady_run(1, k, [sum(accepted) + 1], tokens, [predicted_s], [seconds])
