"""Neighbouring speculative depths ranked by the tokens/s their own steps realized (DepthScheduler's step 2c).

At small batch the plan's ranking among depths that run within a few percent of each other is its model's error:
on the zoo's EAGLE head at B = 4 fixed-4 and fixed-8 ran within 1%, fixed-2 4% and fixed-1 12% slower, and two
identical warm schedulers in one process differed by 2.5% over 24 s because one sat at k ~3 for seven 1-s blocks.
What ranks them without a model is what their steps realized: RealizedGain keeps, per batch size and depth, the
tokens per second (the engine's thread CPU) of warm speculative steps over ~64 steps. While speculating at k (at
small batch sizes: below), a depth within REACH of k whose steps are recent (at most RECENT_STEPS old, at least
MIN_STEPS of them) and whose tokens/s lead k's own by more than Z standard errors of the difference runs instead. It
then stays while the plan keeps choosing k and its own steps keep it ahead of k's, at most until k's evidence is
RECENT_STEPS old: then k runs again and is measured afresh (the greedy k stays the plan's: hysteresis does not keep
the depth).
Both sides are stretches of the same mix of steps (at B = 4 82-87% of steps hold a fresh row; over 32+ steps either
side sees it alike), measured close in time, so a co-tenant's load moves both.

When k +- 1 has no recent evidence (k +- 2 gets some from ProbePlanner's trials and earlier stretches), a trial of
TRIAL_STEPS steps at it supplies some (settled at k: k's own steps recent too), within a budget like ProbePlanner's:
the trials' predicted loss against k (at least MIN_LOSS a step, at most MAX_LOSS: the plan that ranks them is what
is in doubt) is at most BUDGET of the steps' time (one trial every 640-2,130 steps).

Only for MIN_BATCH_SIZE <= B < MAX_BATCH_SIZE, and not in a drain: from B = 16 plain decoding is best and a trial at
k_max costs ~k plain steps; at B = 1 a step emits 1 to k + 1 tokens, so 64 steps read a depth to ~6%, and on a
synthetic B = 1 device where k = 4 is best (k = 6 0.93 of it) arbitration there cost 0.4-0.6% (k >= 6 in 9.6-12.8% of
steps, main 7-8.5%); FirstSteps already plans B = 1's fresh rows apart.
"""

import math
from collections.abc import Sequence

from rollspec.scheduler.decision import DepthStats
from rollspec.scheduler.realized_gain import GAIN_RATE, RealizedGain

MIN_BATCH_SIZE, MAX_BATCH_SIZE = 2, 16
REACH = 2  # depths k - 2 .. k + 2: the near-ties the plan cannot rank (k = 1 vs 4 at B = 4 is a 12% gap it sees)
MIN_STEPS, RECENT_STEPS = 32, 512
# Standard errors a neighbour must lead by. A trial's 64 steps at B = 4 read a depth's tokens/s to ~3% (a step's
# tokens spread ~25%), more than the near-ties at stake: a bar of 2.5 (trials of 32) acted only on gaps >~8% and
# read 0.995-1.006 of main on the zoo's EAGLE B = 4; with 1.5 a wrong switch is ended by the depth's own steps.
Z = 1.5
TRIAL_STEPS = 64
BUDGET, MIN_LOSS, MAX_LOSS = 0.003, 0.03, 0.1


def _arbitrated(batch_size: int) -> bool:
    return MIN_BATCH_SIZE <= batch_size < MAX_BATCH_SIZE


class NeighbourArbiter:
    """Overrules the plan's depth k > 0 by a neighbour's realized tokens/s, and schedules trials at neighbours
    without recent evidence (module doc)."""

    def __init__(self, gain: RealizedGain, k_max: int, stats: DepthStats) -> None:
        self._gain, self._k_max, self._stats = gain, k_max, stats  # counts switches and trials in `stats`
        self._credit, self._credit_step = 0.0, 0  # trials' predicted loss it may spend, in steps at k
        self._held = (0, 0, 0)  # (batch size, the plan's k, the depth run instead) at the last plan
        self.trial_steps = TRIAL_STEPS

    def _recent(self, batch_size: int, k: int, step: int, expected: Sequence[float]) -> tuple[float, float] | None:
        rate = self._gain.speculative_rate(batch_size, k, expected[k])
        if rate is None or rate.count < MIN_STEPS or step - rate.last_step > RECENT_STEPS:
            return None
        return rate.log_rate_and_variance(GAIN_RATE)

    def _neighbours(self, k: int, reach: int = REACH) -> range:
        return range(max(1, k - reach), min(self._k_max, k + reach) + 1)

    def depth(self, batch_size: int, k: int, step: int, expected: Sequence[float]) -> int:
        """The depth to run where the plan chose k > 0: the neighbour furthest ahead of k's own realized tokens/s
        beyond noise, else k (also without recent evidence at k). `expected`: the plan's E[tokens | k] for every k."""
        if not _arbitrated(batch_size) or (own := self._recent(batch_size, k, step, expected)) is None:
            return k
        held = self._held[2] if self._held[:2] == (batch_size, k) else k
        best, best_gap = k, 0.0
        for d in self._neighbours(k):
            if d != k and (other := self._recent(batch_size, d, step, expected)) is not None:
                gap = other[0] - own[0]  # to switch: beyond noise; to stay: ahead
                if gap > (0.0 if d == held else Z * math.sqrt(own[1] + other[1])) and gap > best_gap:
                    best, best_gap = d, gap
        self._held = (batch_size, k, best)
        self._stats.num_neighbour_switches += best != k
        return best

    def trial(self, batch_size: int, k: int, step: int, rate: Sequence[float], expected: Sequence[float]) -> int:
        """A neighbour of k to try for TRIAL_STEPS steps now (k: none): of those without recent evidence, the one
        the plan's `rate` (predicted tokens/s per depth) ranks highest, if its trial's loss fits the credit."""
        self._credit = min(TRIAL_STEPS * MAX_LOSS, self._credit + BUDGET * (step - self._credit_step))
        self._credit_step = step
        if not _arbitrated(batch_size) or self._recent(batch_size, k, step, expected) is None:
            return k
        missing = [d for d in self._neighbours(k, 1) if d != k and self._recent(batch_size, d, step, expected) is None]
        if not missing:
            return k
        d = max(missing, key=rate.__getitem__)
        loss = TRIAL_STEPS * min(MAX_LOSS, max(MIN_LOSS, 1.0 - rate[d] / rate[k]))
        if loss > self._credit:
            return k
        self._credit -= loss
        self._stats.num_neighbour_trials += 1
        return d
