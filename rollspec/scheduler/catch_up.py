"""The drafter's catch-up cost: what the first speculative step after plain steps (or an admission) pays on top.

EAGLE heads and draft models run every token emitted since their last proposal through their
own layers before drafting, in one forward padded to the widest row. In a steady speculative
regime that width is at most k + 1 (the accepted drafts plus the bonus token) and its cost is
part of c_draft(B) as profiled. After n plain steps every row carries n more tokens, and a
newly admitted row carries its whole prompt: on the zoo, such a step took 2-3x its predicted
time at B = 26-128. This model prices the excess width, max(0, T - k - 1) for a catch-up of
width T at depth k, linearly: c_catch(B) seconds per token of excess width.
"""

import math
from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from rollspec.scheduler.config import CostConfig
from rollspec.scheduler.cost_model import StepCostModel, batch_bucket
from rollspec.scheduler.cost_profile import ProfileError
from rollspec.scheduler.interpolation import PiecewiseLinear

_NUM_BUCKETS = 32
_MIN_TIME_S = 1e-9  # a drafter with no catch-up (MTP, n-gram) is profiled at 0: it stays ~0


def excess_tokens(catch_up_tokens: int, k_max: int) -> NDArray[np.int64]:
    """Catch-up width beyond a steady step's, for k = 0 .. k_max (0 at k = 0: plain steps draft nothing)."""
    excess = np.maximum(0, catch_up_tokens - 1 - np.arange(k_max + 1, dtype=np.int64))
    excess[0] = 0
    return excess


def catch_up_horizon(horizon: float, drain: float, drain_rate: float, last_batch_size: int, batch_size: int) -> float:
    """Full-batch steps a catch-up paid now is spread over (DepthScheduler.horizon_steps): `horizon`
    (catch_up_horizon_steps), or fewer if the batch drains: a shrinking batch (no admissions refill it) is expected to
    end in about B / (rows lost per step) steps, with B / 2 rows on average (the catch-up is paid for all B rows now,
    the gain comes per surviving row). `drain`: the mean rows lost per step so far, moved here (weight `drain_rate`)
    by the rows lost since `last_batch_size`, which the scheduler has not counted yet. On the zoo's drain, leaving
    plain at B = 7-11 with a 28-35 token catch-up was planned over ~3 steps: 1-2 were left."""
    if last_batch_size:
        drain += drain_rate * (max(0, last_batch_size - batch_size) - drain)
    return min(horizon, 0.5 * batch_size / drain) if drain > 0 else horizon


def excess_at(catch_up_tokens: int, k: int) -> int:
    """excess_tokens(catch_up_tokens, k_max)[k] for one k >= 1, in Python ints (plans on ~9 floats read it)."""
    return max(0, catch_up_tokens - 1 - k)


class CatchUpCost:
    """c_catch(B): seconds per token of excess catch-up width, profiled per batch size and refined online.

    Interpolated in B like the step costs (PiecewiseLinear); online refinement multiplies it by
    exp(shared + own[bucket]), learned in log space with the CostConfig's rate and clip, from
    steps whose predicted catch-up was at least their predicted drafting (where the residual of
    a step is mostly catch-up; see DepthScheduler.observe). Each observation moves its bucket's
    own part and the shared part by the same step, so half of a miss reaches every batch size:
    such steps are rare (one per return from plain decoding, at whatever batch size a draining
    batch has reached), and on the zoo they ran 1.1-1.5x their prediction at B = 2-11 alike.
    """

    def __init__(self, per_token_s: Mapping[int, float], config: CostConfig = CostConfig()) -> None:
        if not per_token_s:
            raise ProfileError("catch-up profile is empty; profile at least one batch size (0 s for none)")
        for batch_size, seconds in per_token_s.items():
            if batch_size < 1 or not np.isfinite(seconds) or seconds < 0:
                raise ProfileError(f"catch-up profile point B={batch_size}: {seconds!r} s; need B >= 1, finite s >= 0")
        batch_sizes = sorted(per_token_s)
        self._curve = PiecewiseLinear(batch_sizes, [per_token_s[b] for b in batch_sizes])
        self._config = config
        self._log = [0.0] * _NUM_BUCKETS  # Python floats: a numpy element read is a few us inside the engine
        self._shared = 0.0
        self._base: dict[int, float] = {}
        # per_token_s by batch size until the next observe: a plan and a full observe ask it a few times each, and
        # each was a sum and an exp (~2 us inside the engine).
        self._price: dict[int, float] = {}

    @classmethod
    def none(cls) -> "CatchUpCost":
        """A drafter without catch-up cost (or a device where it was not profiled)."""
        return cls({1: 0.0})

    def per_token_s(self, batch_size: int) -> float:
        """Predicted seconds per token of excess catch-up width for batch_size rows."""
        price = self._price.get(batch_size)
        if price is None:
            base = self._base.get(batch_size)
            if base is None:
                base = self._base[batch_size] = max(float(self._curve(batch_size)), _MIN_TIME_S)
            price = self._price[batch_size] = base * math.exp(self._shared + self._log[batch_bucket(batch_size)])
        return price

    def catch_up_s(self, batch_size: int, excess: int) -> float:
        """Predicted seconds of a catch-up `excess` tokens wider than steady, for batch_size rows."""
        return excess * self.per_token_s(batch_size) if excess > 0 else 0.0

    def observe(self, batch_size: int, excess: int, observed_s: float) -> None:
        """One step whose catch-up of `excess` extra tokens per row was measured to take observed_s."""
        if excess <= 0:
            return
        predicted = self.catch_up_s(batch_size, excess)
        clip = self._config.max_log_error
        error = min(clip, max(-clip, math.log(max(observed_s, _MIN_TIME_S * excess) / predicted)))
        step = self._config.correction_rate * error
        self._log[batch_bucket(batch_size)] += step
        self._shared += step
        self._price.clear()


def observe_step_costs(cost: StepCostModel, catch_up: CatchUpCost, batch_size: int, k: int, excess: int,
                       catch_up_s: float, draft_time_s: float, target_time_s: float, *, is_cold: bool = False) -> None:
    """Split a step's measured drafting time between catch-up and drafting proper, each model learning its part.

    Where the predicted catch-up is at least the predicted drafting, the step's residual
    goes to the catch-up model and the drafting model is told its own prediction (no
    information); otherwise the predicted catch-up is taken off before the drafting model
    learns. One step thus never corrects both by the same error. A cold step (a probe right
    after plain steps) teaches the catch-up model alone: the step model is told its own
    predictions, which marks the width as run (DepthScheduler.observe says why).
    """
    drafting_s = cost.drafting_s(batch_size, k)
    if catch_up_s > 0 and catch_up_s >= drafting_s:
        catch_up.observe(batch_size, excess, draft_time_s - drafting_s)
        draft_time_s = drafting_s
    else:
        draft_time_s = max(0.0, draft_time_s - catch_up_s)
    if is_cold:
        draft_time_s, target_time_s = drafting_s, cost.target_s(batch_size, k + 1)
    cost.observe(batch_size, k, draft_time_s, target_time_s)
