"""Probing deeper than the greedy depth, so a phase of bad acceptance cannot lock k at 0 (DepthScheduler's step 3)."""

import math
from collections.abc import Sequence

import numpy as np

from rollspec.scheduler.config import DepthConfig
from rollspec.scheduler.cost_model import batch_bucket
from rollspec.scheduler.decision import DepthDecision
from rollspec.scheduler.realized_gain import RealizedGain

# Probes from plain decoding cost at most this fraction of its time: each pays the drafter's whole catch-up
# (on the zoo at B = 1, ~2 plain steps of it after 128 plain steps: a probe every 128 steps cost ~1.6%).
PROBE_BUDGET = 0.01
# Weight of the newest probe from plain decoding in the mean ratio of its realized to its predicted time.
PROBE_COST_RATE = 0.5
MAX_PROBE_COST_RATIO = 4.0
# A probe stands this many steps at its depth (a trial). From plain decoding its first step runs cold (catch-up,
# drafter out of cache: ~1.9x its prediction on the zoo) and teaches no prices (DepthScheduler.observe); the
# others, steady, price speculation. Priced by such probes alone once the plan sat at plain, EAGLE at B = 1 on
# the zoo stayed at plain for good after a burst had priced k = 2-6 1.45-1.7x dear.
TRIAL_STEPS = 8
# Trials from k > 0, per batch bucket: weight of the newest in the mean log of their steady steps' realized tokens/s
# over the greedy depth's (RealizedGain's ~64 steps); where that mean is a loss, trials come at most as often as keeps
# their realized loss to TRIAL_LOSS_BUDGET of the steps, up to MAX_TRIAL_STRETCH x the interval. On the zoo (main,
# 6,000 steps x 2) trials ran every ~150-200 steps: EAGLE B = 4 realized a median 0.97 of the steady steps' tokens/s
# (a trial's 7 steps there spread +-8%), EAGLE B = 1 1.03-1.07, where they are what moves the plan to k = 8. A trial
# counts at most +-MAX_TRIAL_GAIN: at B = 1 seven steps' tokens spread more than that (a synthetic k = 8 that is 5%
# faster than k = 6 realized 0.58x in one trial, and a 1,024-step pause then kept the plan from it); only the mean's
# loss beyond its standard error is charged, and nothing before MIN_TRIALS trials (there a mean of -1% over four
# noisy trials kept the plan from k = 8 for 200 steps).
TRIAL_GAIN_RATE = 0.125
MAX_TRIAL_GAIN = 0.15
MIN_TRIALS = 4
TRIAL_LOSS_BUDGET = 0.0005
MAX_TRIAL_STRETCH = 8
# Never scheduled (or not since weights changed): due now, whatever its budget's interval.
_LONG_AGO = -(1 << 40)


class ProbePlanner:
    """Which depth, if any, to probe this step, and the clocks and credit that space probes.

    From k = 0: position 1 not scheduled for `probe_interval_steps` steps (longer where the probe is dear:
    PROBE_BUDGET of plain's time for its catch-up, drafting and verify, at the depth it would probe and as probes
    from plain have realized against their predictions), a credit available, and some depth that would beat plain
    were its positions always accepted, by more than `probe_min_gain` (no margin in the k_max steps after a weight
    change): the shallowest such depth.

    From k > 0: of the deeper depths whose deepest position has not run for `probe_interval_steps` steps and whose
    trial is predicted to lose against k no more than the credit `explore_budget` of the steps' time has banked (up
    to one step's worth), the one that would gain most were its positions beyond k always accepted. A depth the plan
    does not run is not re-measured otherwise: its acceptance keeps the values that made the plan leave it and its
    price what the profile and other widths' corrections made it. On the zoo's EAGLE head at B = 1 (a position rests
    on ~20 rows there) a warm plan at k = 5 held positions 6-8 at 0.69 / 0.76 / 0.68, last run 160-225 steps before,
    where the same process had measured 0.80 / 0.91 / 0.82 at k = 8, and priced k = 8 1.23x k = 5 where the engine's
    steps took ~1.13x: it stayed at k = 5 where k = 8 ran ~9% faster. A single probe step (the rule before) added
    one row of evidence and a tenth of a price correction, and needed a gain over `probe_min_gain` deep depths
    rarely offer.

    Trials from k > 0 are charged what they realized against the greedy depth (TRIAL_LOSS_BUDGET): where they keep
    losing, they come less often.

    Either probe stands a trial of TRIAL_STEPS steps (DepthScheduler). Credits (one per probe_interval_steps, at
    most k_max banked) cap probes at k_max + W / probe_interval_steps in any W steps.
    """

    def __init__(self, config: DepthConfig, gain: RealizedGain | None = None) -> None:
        self._k_max = config.k_max
        self._interval = config.probe_interval_steps
        self._min_gain = config.probe_min_gain
        # Index j = draft position (index 0 unused): the step at which k >= j last ran.
        self._last_scheduled = np.full(config.k_max + 1, _LONG_AGO, dtype=np.int64)
        self._credit = float(config.k_max)
        # Trials' predicted loss it may spend, in steps at the greedy depth: at the default 1%, a trial predicted to
        # lose 5% of its steps (k = 8 from k = 5 at B = 1 on the zoo) may come every ~40 steps.
        self._explore_budget, self._explore_credit = config.explore_budget, 0.0
        self._no_margin_until = -1  # right after a weight change any possible gain is worth a probe
        self.plain_due_step = 0  # from plain decoding, the step a probe may next fall due (set by `depth`)
        # Probes from plain, realized / predicted time: on the zoo (EAGLE, B = 1-4, k = 8) ~1.9, the catch-up and
        # the first drafting steps after a plain stretch running cold, so budgeting the prediction spent ~2%.
        self._cost_ratio = 1.0
        self.num_passed = 0  # plans in a row from plain decoding where a due probe was not worth it (reset by one)
        # Trials from k > 0 charged what they realized against the greedy depth's steps (`gain`; none: no charge).
        self.trials = RealizedTrials(gain or RealizedGain(config.realized, enabled=False), config.probe_interval_steps)

    def depth(self, k: int, rate: Sequence[float], step_s: Sequence[float], expected: Sequence[float], step: int, *,
              settled: bool = True, batch_size: int = 1) -> int:
        """The depth to run at `step` instead of the greedy `k` (k itself when no probe is due or worth it). From k > 0
        only where k ran last step at this batch size (`settled`): from a veto's plain stand (the realized check's
        evidence then aged out) a trial priced by the vetoed model ran 8 steps at k_max, each 10x a plain step, on a
        synthetic device; in a bucket just entered, one priced by the profile alone ran k_max where k = 2 was best."""
        k_max, interval = self._k_max, self._interval
        if k == k_max:
            return k
        if k > 0:
            return self._trial_depth(k, step_s, expected, step, batch_size) if settled else k
        candidate = self._deeper(k, rate, step_s, expected, step)
        if k == 0:  # a probe from plain decoding pays the whole catch-up: at most PROBE_BUDGET of plain's time
            c = max(candidate, 1)  # and its trial's steady steps what they are predicted to lose against plain
            trial_loss_s = (TRIAL_STEPS - 1) * expected[c] * max(0.0, 1.0 / rate[c] - 1.0 / rate[0])
            probe_s = self._cost_ratio * step_s[c] - step_s[0] + trial_loss_s
            interval = max(interval, int(probe_s / (PROBE_BUDGET * step_s[0])))
            self.plain_due_step = int(self._last_scheduled[1]) + interval
        if self._credit < 1.0 or step - self._last_scheduled[k + 1] < interval:
            return k
        if k == 0:
            self.num_passed = self.num_passed + 1 if candidate == 0 else 0
        return candidate

    def _trial_depth(self, k: int, step_s: Sequence[float], expected: Sequence[float], step: int,
                     batch_size: int) -> int:
        """From k > 0: the depth of a trial (class doc), or k."""
        if self._credit < 1.0 or not self._explore_budget:
            return k
        depths = range(k + 1, self._k_max + 1)
        # What a trial at each depth is predicted to lose against k, in steps at k.
        loss = [TRIAL_STEPS * max(0.0, step_s[d] / step_s[k] - expected[d] / expected[k]) for d in depths]
        optimistic = self._optimistic(k, step_s, expected)
        # No bound on what it could gain: that rests on the prices a trial is there to check.
        last, credit = self._last_scheduled.tolist(), self._explore_credit
        interval = self.trials.interval(batch_size, expected)
        worth = [step - last[d] >= interval and lost <= credit for d, lost in zip(depths, loss)]
        if not any(worth):
            return k
        value = [o if w else 0.0 for o, w in zip(optimistic, worth)]
        i = max(range(len(value)), key=value.__getitem__)  # the first best, as argmax's
        self._explore_credit -= loss[i]
        self.trials.start(batch_size, k, k + 1 + i, step)
        return k + 1 + i

    def _optimistic(self, k: int, step_s: Sequence[float], expected: Sequence[float]) -> list[float]:
        """Tokens/s of every depth beyond k were its positions beyond k always accepted."""
        # Probability of reaching position k + 1 is the last increment of E[tokens | k].
        reach = float(expected[k] - expected[k - 1]) if k > 0 else 1.0
        return [(expected[k] + reach * extra) / s for extra, s in enumerate(step_s[k + 1:], 1)]

    def _deeper(self, k: int, rate: Sequence[float], step_s: Sequence[float], expected: Sequence[float],
                step: int) -> int:
        """The shallowest depth beyond k that would beat it were its unexplored positions always accepted, else k."""
        margin = 0.0 if step <= self._no_margin_until else self._min_gain
        bar = rate[k] * (1.0 + margin)
        return next((k + 1 + i for i, o in enumerate(self._optimistic(k, step_s, expected)) if o > bar), k)

    def observe_from_plain(self, realized_s: float, predicted_s: float) -> None:
        """A probe from plain decoding took `realized_s` where `predicted_s` was planned."""
        ratio = min(MAX_PROBE_COST_RATIO, realized_s / predicted_s) if predicted_s > 0 else 1.0
        self._cost_ratio += PROBE_COST_RATE * (ratio - self._cost_ratio)

    def spend(self) -> None:
        """A probe was scheduled."""
        self._credit -= 1.0

    def earn(self, num_steps: int) -> None:
        """`num_steps` steps went by: credit accrues, up to k_max probes and one step's loss for trials (a bank of a
        whole trial's let one predicted to lose 4 steps run into a 150-step phase at B = 1 where k = 2 was best)."""
        self._credit = min(float(self._k_max), self._credit + num_steps / self._interval)
        self._explore_credit = min(1.0, self._explore_credit + self._explore_budget * num_steps)

    def scheduled(self, k: int, step: int) -> None:
        """Positions 1..k ran at `step`."""
        self._last_scheduled[1: k + 1] = step + 1

    def reopen(self, step: int) -> None:
        """Weights changed: every position may be probed again, without the margin for the next k_max steps."""
        self._last_scheduled[:] = _LONG_AGO
        self._no_margin_until = step + self._k_max
        self.num_passed = 0
        self.trials.forget()


class RealizedTrials:
    """What trials from k > 0 realized against the greedy depth, per batch bucket, and the interval between them
    that this charges (module constants TRIAL_GAIN_RATE .. MAX_TRIAL_STRETCH). A trial's steps after its first (cold
    for the drafter's deeper positions, as the plan's first steps at a new k) are summed as they are observed, one by
    one or folded in bulk alike, and compared, at the next plan, with the greedy depth's recent steps (`gain`)."""

    def __init__(self, gain: RealizedGain, interval: int) -> None:
        self._gain, self._interval = gain, interval
        self._trial: tuple[int, int, int, int] | None = None  # (batch size, greedy k, depth, step) of the last
        self._tokens, self._seconds = 0, 0.0  # its steps' after the first
        # Batch bucket -> mean log(trial's realized tokens/s / greedy k's), mean of its squares, number of trials.
        self._mean: dict[int, tuple[float, float, int]] = {}

    def start(self, batch_size: int, k: int, depth: int, step: int) -> None:
        """A trial at `depth` from the greedy `k` begins at `step`."""
        self._trial, self._tokens, self._seconds = (batch_size, k, depth, step), 0, 0.0

    def observe(self, first_step: int, batch_size: int, k: int, num_tokens: list[int], step_s: list[float]) -> None:
        """Steps at k from `first_step` emitted `num_tokens` in `step_s`: summed if the trial's (after its first)."""
        trial = self._trial
        if trial is None or (batch_size, k) != trial[0:3:2] or not 0 < first_step - trial[3] < TRIAL_STEPS:
            return
        for n, s in zip(num_tokens, step_s):  # one by one, as the steps observed one by one are summed
            self._tokens, self._seconds = self._tokens + n, self._seconds + s

    def observe_step(self, decision: DepthDecision) -> None:
        """One warm step observed on its own (not folded in bulk)."""
        self.observe(decision.step, decision.batch_size, decision.k, [decision.realized_tokens],
                     [decision.realized_step_s])

    def interval(self, batch_size: int, expected: Sequence[float]) -> int:
        """Steps between trials from k > 0 at this batch size, once the last trial is charged (`expected`: the plan's
        E[tokens | k], which RealizedGain's evidence must still match)."""
        self._charge(expected)
        mean, square, count = self._mean.get(batch_bucket(batch_size), (0.0, 0.0, 0))
        if count < MIN_TRIALS:
            return self._interval
        effective = min(count, (2.0 - TRIAL_GAIN_RATE) / TRIAL_GAIN_RATE)  # an EMA's sample count
        loss_steps = TRIAL_STEPS * max(0.0, -mean - math.sqrt(max(0.0, square - mean * mean) / effective))
        return min(MAX_TRIAL_STRETCH * self._interval, max(self._interval, int(loss_steps / TRIAL_LOSS_BUDGET)))

    def forget(self) -> None:
        """Weights changed: what trials realized was under the old acceptance (RealizedGain forgets it too)."""
        self._trial, self._mean = None, {}

    def _charge(self, expected: Sequence[float]) -> None:
        if self._trial is None or self._seconds <= 0:
            return
        batch_size, k = self._trial[:2]
        self._trial, greedy = None, self._gain.speculative_rate(batch_size, k, expected[k])
        if greedy is None or greedy.tokens <= 0:
            return
        realized = math.log(self._tokens * greedy.seconds / (self._seconds * greedy.tokens))
        realized = min(MAX_TRIAL_GAIN, max(-MAX_TRIAL_GAIN, realized))
        bucket = batch_bucket(batch_size)
        mean, square, count = self._mean.get(bucket, (0.0, 0.0, 0))
        weight = max(TRIAL_GAIN_RATE, 1.0 / (count + 1))
        self._mean[bucket] = (mean + weight * (realized - mean), square + weight * (realized * realized - square),
                              count + 1)
