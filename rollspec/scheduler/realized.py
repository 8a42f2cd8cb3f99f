"""The check of predicted against realized throughput: speculative vs plain steps, per batch size.

The depth policy ranks depths with predicted costs, and those come from a start-up profile
that a loaded machine can get wrong by 2x, corrected online only in the parts the cost model
has (draft and verify time per batch bucket and q). What it cannot fake is the measured
outcome: how long steps at k > 0 and at k = 0 took at the same batch size. This check keeps,
per batch-size bucket, how far each kind of step's realized time fell from its prediction
(log predicted / realized: the speed miss), and calls speculation *losing* where the
predicted tokens/s of k > 0, shifted by its mean speed miss, is below plain decoding's,
shifted by its own, by more than the noise of the two means.

Times, not tokens: acceptance is observed directly and tracked by the estimator, and a token
miss measured under old acceptance would outlive it (no speculative step runs while the
verdict holds, so nothing would correct it). A speed miss is what the cost model has not
learned: the split of drafting and catch-up it guessed wrong, overhead outside its terms,
a bucket its corrections have not reached.
"""

import math

from rollspec.scheduler.config import RealizedConfig
from rollspec.scheduler.cost_model import batch_bucket

_NUM_BUCKETS = 32
# A bucket whose last verdict found speculation ahead of plain decoding by this much (log tokens/s) beyond the
# losing bar is checked CLEAR_WIN_STRETCH times less often: a veto there needs plain decoding to gain more than
# twice the bar on speculation first. At B = 1 on the zoo (k = 4, ~1.2x plain) each check cost ~1 ms (two plans,
# the plain step, the full path of the step after), ~2.5% of the 64 speculative steps between checks.
CLEAR_WIN_GAP, CLEAR_WIN_STRETCH = 0.08, 4


class _LogMean:
    """Exponentially weighted mean and variance of log values, with the number of samples it rests on."""

    __slots__ = ("mean", "var", "count", "last_step")

    def __init__(self) -> None:
        self.mean, self.var, self.count, self.last_step = 0.0, 0.0, 0, -(1 << 62)

    def add(self, x: float, weight_floor: float, step: int) -> None:
        self.add_run([x], weight_floor, step)

    def add_run(self, xs: list[float], weight_floor: float, last_step: int) -> None:
        """add() each of xs in turn, the last at `last_step`: the update in local floats (a call per value was ~2 us
        inside the engine)."""
        m, var, count = self.mean, self.var, self.count
        for x in xs:
            count += 1
            w = 1.0 / count if 1.0 / count > weight_floor else weight_floor  # a plain mean until 1 / count is under it
            delta = x - m
            m += w * delta
            var = (1.0 - w) * (var + w * delta * delta)
        self.mean, self.var, self.count, self.last_step = m, var, count, last_step

    def squared_error(self, weight_floor: float) -> float:
        """Variance of the mean: var over the effective sample count ((2 - w) / w for an EMA of weight w)."""
        effective = min(self.count, (2.0 - weight_floor) / weight_floor)
        return self.var / effective


class RealizedCheck:
    """Mean log(predicted / realized step time) of plain and of speculative steps per batch-size bucket
    (the buckets of CostModel).

    Judged only when both means rest on `min_steps` steps; "beyond noise" is `z` standard
    errors of the difference of the two means and at least `min_gap`. Speculative evidence `veto_steps` steps old is
    dropped, so a verdict cannot outlive the conditions it was measured in by much.
    """

    def __init__(self, config: RealizedConfig) -> None:
        self._config = config
        self._plain = [_LogMean() for _ in range(_NUM_BUCKETS)]
        self._speculative = [_LogMean() for _ in range(_NUM_BUCKETS)]
        self._stretch = [1] * _NUM_BUCKETS  # the plain check interval's multiple, per bucket (its last verdict)

    def observe(self, step: int, batch_size: int, k: int, realized_s: float, predicted_s: float) -> None:
        """One step at depth k that took `realized_s` seconds where `predicted_s` was predicted."""
        if realized_s <= 0 or predicted_s <= 0:
            return
        x = math.log(predicted_s / realized_s)
        means = self._speculative if k > 0 else self._plain
        means[batch_bucket(batch_size)].add(x, self._config.rate, step)

    def observe_run(self, first_step: int, batch_size: int, realized_s: list[float], predicted_s: list[float]) -> None:
        """Consecutive speculative steps from `first_step` at one batch size, as `observe` would one by one."""
        xs, last = [], first_step
        for i, (realized, predicted) in enumerate(zip(realized_s, predicted_s)):
            if realized > 0 and predicted > 0:
                xs.append(math.log(predicted / realized))
                last = first_step + i
        if xs:
            self._speculative[batch_bucket(batch_size)].add_run(xs, self._config.rate, last)

    def is_losing(self, batch_size: int, step: int, predicted_per_s: float, predicted_plain_per_s: float) -> bool:
        """Whether a speculative step predicted at `predicted_per_s` tokens/s, with the speed misses seen at this
        batch size's bucket, is slower than a plain one predicted at `predicted_plain_per_s`, beyond noise."""
        b = batch_bucket(batch_size)
        plain, speculative = self._plain[b], self._speculative[b]
        if speculative.count and step - speculative.last_step > self._config.veto_steps:
            self._speculative[b] = speculative = _LogMean()  # old evidence: let speculation be judged afresh
        self._stretch[b] = 1
        if min(plain.count, speculative.count) < self._config.min_steps:
            return False
        noise = math.sqrt(plain.squared_error(self._config.rate) + speculative.squared_error(self._config.rate))
        gap = math.log(predicted_per_s / predicted_plain_per_s) + speculative.mean - plain.mean
        bar = max(self._config.z * noise, self._config.min_gap)
        if gap > bar + CLEAR_WIN_GAP:
            self._stretch[b] = CLEAR_WIN_STRETCH
        return gap < -bar

    def needs_plain_step(self, batch_size: int, step: int) -> bool:
        """Whether a speculating scheduler should run a plain step now, to keep the plain side of the check measured:
        every `plain_check_interval_steps` (CLEAR_WIN_STRETCH times that after a verdict of a clear win), or every
        eighth of it until `min_steps` plain steps are in."""
        return self.plain_step_due_in(batch_size, step, stretched=True) == 0

    def plain_step_due_in(self, batch_size: int, step: int, *, stretched: bool = False) -> int:
        """Steps from `step` until the plain step is due without a clear win's stretch (0 if it is), or, past that
        under a stretch, until the next multiple of the interval: a standing choice ends there (standing_steps), so
        a plan re-reads the verdict the stretch rests on every interval, and stands are as long as without it.
        With stretched=True, until `needs_plain_step` holds."""
        b = batch_bucket(batch_size)
        plain = self._plain[b]
        interval = self._config.plain_check_interval_steps
        if plain.count < self._config.min_steps:
            interval = max(1, interval // 8)
        due = plain.last_step + interval - step
        if stretched:
            due += (self._stretch[b] - 1) * interval
        elif due <= 0 and self._stretch[b] > 1:
            due = due % interval or interval
        return max(0, due)

    def forget_speculative(self) -> None:
        """Drop the speculative evidence everywhere (the weights changed: acceptance did too)."""
        self._speculative = [_LogMean() for _ in range(_NUM_BUCKETS)]
        self._stretch = [1] * _NUM_BUCKETS
