"""Per-depth correction of predicted tokens/s by what steps at that depth realized, per batch-size bucket.

The cost model's errors are not one factor across depths. On the zoo's EAGLE head at B = 1, the
drafting of a speculative step is ~0.35 ms + 0.23 ms per position (the catch-up of each newly
admitted prompt lands in it), while the model prices it k * c_draft with c_draft learned at the
depth in use: run at k = 3-5, it priced k = 1-4 12-15% too cheap and k = 8 right, so the argmax sat
on a middle depth that realized less than both k = 0 and k = 8. Tokens miss by depth too (sequence
ends truncate deep drafts; a deep position's acceptance rests on few rows).

So each speculative depth k keeps, per bucket, an exponentially weighted mean of log(predicted /
realized step time) over the steps run at k, and its predicted tokens/s is multiplied by its exp once
`min_steps` steps are in. Times only: tokens are the acceptance estimator's job, and a token miss
measured while it was still learning would outlive its cause.

A depth not run borrows between run depths log-linearly in k; beyond the deepest run depth or below
the shallowest it borrows the nearest one's miss in seconds. Borrowing the factor outward was the
trap: run at k = 5 and corrected down 10%, k = 6-8 borrowed the same 10% and the scheduler stayed at 5
where 8 was best. Not borrowing at all made every depth run min_steps steps before it could be
ruled out, where the model was off by one factor everywhere (a slower machine).
Plain decoding (k = 0) is not corrected here: RealizedCheck compares it with speculation.
"""

import math

import numpy as np
from numpy.typing import NDArray

from rollspec.scheduler.config import RateCorrectionConfig
from rollspec.scheduler.cost_model import batch_bucket

_NUM_BUCKETS = 32


class RateCorrection:
    """Log-factors on predicted tokens/s per (batch-size bucket, k), learned from realized steps."""

    def __init__(self, k_max: int, config: RateCorrectionConfig) -> None:
        self._config = config
        self._k_max = k_max
        # log(predicted / realized step time) per [bucket, k], against the cost model as it stands now
        self._log = np.zeros((_NUM_BUCKETS, k_max + 1))
        self._count = np.zeros((_NUM_BUCKETS, k_max + 1), dtype=np.int64)
        # bucket -> (batch size, factors for k = 0 .. k_max), until the bucket is next observed
        self._factors: dict[int, tuple[int, NDArray[np.float64]]] = {}

    def observe(self, batch_size: int, k: int, before_s: NDArray[np.float64], after_s: NDArray[np.float64],
                realized_s: float, catch_up_s: float = 0.0) -> None:
        """One step at depth k that took `realized_s`. `before_s` / `after_s`: the cost model's step times for
        k = 0 .. k_max at this batch size before and after it learned from the step; `catch_up_s` the
        catch-up priced on top of after_s[k] for this step.

        Every depth's miss is kept against the model as it is now: where the model moved (it learns at the
        depth in use, and part of that reaches every depth), the misses of the other depths move with it.
        Otherwise a depth run early, against a model not yet corrected, would keep the model's old error."""
        b = batch_bucket(batch_size)
        if k == 0 and not self.is_tracking(batch_size):
            return
        self._log[b] += np.log(after_s / before_s)
        if k > 0 and realized_s > 0:
            miss = math.log((float(after_s[k]) + catch_up_s) / realized_s)
            self._count[b, k] += 1
            weight = max(1.0 / self._count[b, k], self._config.rate)
            self._log[b, k] += weight * (miss - self._log[b, k])
        self._factors.pop(b, None)

    def is_tracking(self, batch_size: int) -> bool:
        """Whether any speculative step has been observed in this batch size's bucket (else a plain step
        has nothing to update here: callers skip the step times they would pass)."""
        return bool(self._count[batch_bucket(batch_size)].any())

    def factors(self, batch_size: int, step_s: NDArray[np.float64]) -> NDArray[np.float64]:
        """Multiplier of predicted tokens/s for k = 0 .. k_max at this batch size (1 where unknown), given the
        cost model's step times `step_s` for k = 0 .. k_max here.

        Kept across weight changes: it corrects the model's step times, which do not change with the
        weights, and a sync every few dozen steps would otherwise re-run every excursion."""
        b = batch_bucket(batch_size)
        cached = self._factors.get(b)
        if cached is None or cached[0] != batch_size:
            cached = self._factors[b] = (batch_size, np.exp(self._log_factors(b, step_s)))
        return cached[1]

    def _log_factors(self, b: int, step_s: NDArray[np.float64]) -> NDArray[np.float64]:
        factors = np.zeros(self._k_max + 1)
        run = np.flatnonzero(self._count[b, 1:] >= self._config.min_steps) + 1
        if not run.size:
            return factors
        first, last = int(run[0]), int(run[-1])
        factors[first: last + 1] = np.interp(np.arange(first, last + 1), run, self._log[b, run])
        # Outside the run depths the nearest one's miss is lent in seconds, not as a factor: what the
        # model misses is mostly per step (the catch-up of admitted prompts, the switch), and a factor
        # lent to k = 8 from k = 3 charged it 2-3 times over.
        for edge, ks in ((first, np.arange(1, first)), (last, np.arange(last + 1, self._k_max + 1))):
            if ks.size:
                missed_s = step_s[edge] * (math.exp(-factors[edge]) - 1.0)
                factors[ks] = np.log(step_s[ks] / np.maximum(step_s[ks] + missed_s, 1e-3 * step_s[ks]))
        # Misses within the deadband are noise as far as ranking goes (true rates of neighbouring depths
        # differ by a few percent; a 3% noise miss moved k = 8 to 4 on a synthetic device): shrunk to 0.
        band, clip = self._config.deadband, self._config.max_log_factor
        return np.clip(np.sign(factors) * np.maximum(np.abs(factors) - band, 0.0), -clip, clip)
