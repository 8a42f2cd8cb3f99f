"""Speculation against plain decoding by the tokens/s each realized at one batch size (DepthScheduler's step 2b).

The plan compares depths by predicted tokens/s, and the prediction can sit on the wrong side of plain decoding
for long: after a plain stretch the acceptance estimate rests on one step's rows (the estimator ages by clock
steps), and a depth's price is re-measured only when it runs. On the zoo's EAGLE head at B = 4 a warm plan
predicted k = 5-7 at 0.95-1.0x plain's tokens/s and went plain where those steps had realized ~1.2x, and from plain
it predicted k = 4-6 at ~0.9-1.0x (leaving plain needs 1.15x: `start_gain`) while its trials realized 1.04-1.12x:
it stayed plain for thousands of steps. Steps' outcomes are not predictions: this keeps, per batch size, the
tokens/s of settled plain steps (not those right after speculation, 1.2-1.6x dear) and, per depth, of warm
speculative steps (not the cold first one after plain steps: a trial's steady steps), over ~64 steps each.

Where the plan chooses plain (k = 0), the depth that realized the most tokens/s at this batch size runs instead if
it is ahead of plain (each side on at least min_steps steps, the speculative ones at most veto_steps old; a
probe's trial has TRIAL_STEPS - 1). Speculation kept so lasts while its own steps keep it ahead, and RealizedCheck
(which judges predicted tokens corrected by speed misses) does not veto a depth measured ahead. When no depth is
ahead and some were measured after plain's steps, plain is measured afresh (a co-tenant's load moves both sides
by 10-20% within minutes on this VM, and plain's last stretch may be long past), and those depths must then beat
it by `min_gap`; a depth not ahead so is forgotten, so only new steps at it (the next trial) can start it again,
not the same evidence as plain's mean moves: no flip back and forth. No bar beyond noise: a trial's 7 steps at
B = 4 spread +-8% (four rows' accepted drafts), more than the gain at stake; a gain missed waits for the next
trial (~1,000-3,000 steps there), a wrong start is ended by the stretch's own steps within tens of steps.
"""

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from rollspec.scheduler.config import RealizedConfig

# Weight of the newest step in each side's tokens/s: a memory of ~64 steps. At B = 4 on the zoo a speculative step's
# tokens spread ~25% (four rows' accepted drafts), so RealizedCheck's 16-step memory read a synthetic k = 4 that was
# 7.5% ahead of plain 1% behind from time to time, and its evidence was dropped mid-stretch.
GAIN_RATE = 1.0 / 64.0
# A depth's evidence counts only while the plan's acceptance gives it at least this fraction of the drafts per row
# its steps accepted: it was measured under that acceptance. After a drop from 0.85 to 0.1 (synthetic) the plan
# went plain and evidence of k = 5-8 from before the drop, 100-200 steps old, took it back to them; on the zoo at
# B = 4 a plan from plain expected 1.98 drafts at k = 4 where fixed-4 accepted 3.03 (0.65 of it).
ACCEPTANCE_KEEP = 0.5


class _StepRate:
    """Tokens per second of a stretch of steps, exponentially weighted (weight `rate` for the newest step): a ratio
    of weighted sums, not a mean of per-step rates. At B = 1 a step emits 1 or up to k + 1 tokens, and a mean of
    logs read a synthetic k = 1 at 1.09 tokens a step 5% under plain decoding, where it was 4% over."""

    __slots__ = ("tokens", "seconds", "weight", "count", "last_step", "moments")

    def __init__(self) -> None:
        self.tokens, self.seconds, self.weight, self.count, self.last_step = 0.0, 0.0, 0.0, 0, 0
        self.moments = (0.0, 0.0, 0.0)  # weighted sums of tokens^2, tokens * seconds, seconds^2: the rate's noise

    def add_run(self, num_tokens: list[int], step_s: list[float], rate: float, last_step: int) -> None:
        keep = 1.0 - rate
        nn, ns, ss = self.moments
        for n, s in zip(num_tokens, step_s):
            if s > 0:
                self.tokens, self.seconds = keep * self.tokens + n, keep * self.seconds + s
                nn, ns, ss = keep * nn + n * n, keep * ns + n * s, keep * ss + s * s
                self.weight += 1.0 - rate * self.weight  # keep * weight + 1
                self.count += 1
        self.moments = (nn, ns, ss)
        self.last_step = last_step

    def log_rate_and_variance(self, rate: float) -> tuple[float, float]:
        """log(tokens / seconds) and the variance of that estimate (the delta method's for a ratio of sums: the
        steps' residuals n - R s over the seconds, on the effective sample count of an EMA of weight `rate`)."""
        r = self.tokens / self.seconds
        nn, ns, ss = self.moments
        residual = max(0.0, nn - 2.0 * r * ns + r * r * ss) / self.weight
        effective = min(self.count, (2.0 - rate) / rate)
        return math.log(r), residual / (r * r * (self.seconds / self.weight) ** 2 * effective)


class RealizedGain:
    """Realized tokens/s of plain steps per batch size and of speculative steps per batch size and depth (module
    doc): evidence about one depth says nothing of another (a trial at k = 1 that lost did not make k = 6 lose)."""

    def __init__(self, config: RealizedConfig, *, enabled: bool = True) -> None:
        self._config, self._enabled = config, enabled  # disabled: it measures, and never overrules the plan
        self._plain: dict[int, _StepRate] = {}
        self._speculative: dict[int, dict[int, _StepRate]] = {}  # batch size -> k -> its steps

    def observe(self, step: int, batch_size: int, k: int, num_tokens: int, step_s: float) -> None:
        """One settled plain step or one warm speculative step at `step` emitted `num_tokens` in `step_s`."""
        self.observe_run(step, batch_size, k, [num_tokens], [step_s])

    def observe_run(self, first_step: int, batch_size: int, k: int, num_tokens: list[int], step_s: list[float]) -> None:
        """Consecutive steps from `first_step` at one batch size and depth, as `observe` one by one."""
        if k:
            by_depth = self._speculative.setdefault(batch_size, {})
            mean = by_depth.get(k) or by_depth.setdefault(k, _StepRate())
        else:
            mean = self._plain.get(batch_size) or self._plain.setdefault(batch_size, _StepRate())
        mean.add_run(num_tokens, step_s, GAIN_RATE, first_step + len(step_s) - 1)

    def gain(self, batch_size: int, k: int, step: int, expected_k: float) -> float | None:
        """log(realized tokens/s at k / plain's) at this batch size; None without min_steps of each, with the
        speculative ones older than veto_steps, or measured under acceptance the plan's E[tokens | k] (`expected_k`)
        no longer gives ACCEPTANCE_KEEP of."""
        plain, speculative = self._plain.get(batch_size), self.speculative_rate(batch_size, k, expected_k)
        if plain is None or speculative is None:
            return None
        if min(plain.count, speculative.count) < self._config.min_steps or (
                step - speculative.last_step > self._config.veto_steps):
            return None
        return math.log(speculative.tokens * plain.seconds / (speculative.seconds * plain.tokens))

    def is_ahead(self, batch_size: int, k: int, step: int, expected: Sequence[float] | NDArray[np.float64]) -> bool:
        """Whether speculation at k realized more tokens/s than plain decoding at this batch size (then RealizedCheck,
        which judges predicted tokens corrected by speed misses, does not veto it); `expected`: E[tokens | k]."""
        gain = self.gain(batch_size, k, step, expected[k])
        return gain is not None and gain > 0

    def faster_depth(self, batch_size: int, step: int, expected: Sequence[float] | NDArray[np.float64]) -> int:
        """For a plan that chose plain decoding: the depth whose steps realized the most tokens/s at this batch size if
        more than plain steps did (by `min_gap` if plain's were measured after them), else 0 (module doc). A depth
        measured not ahead of plain steps older than its own has plain re-measured once; one not ahead by the
        margin of newer ones is forgotten. `expected`: the plan's E[tokens | k] for every k."""
        by_depth = self._speculative.get(batch_size)
        if not by_depth:
            return 0
        plain_step = self._plain[batch_size].last_step if batch_size in self._plain else 0
        ahead: dict[int, float] = {}  # depth -> gain, where ahead
        newer: list[int] = []  # the depths not ahead, measured after plain
        for depth, speculative in list(by_depth.items()):
            gain = self.gain(batch_size, depth, step, expected[depth])
            is_newer = speculative.last_step > plain_step
            if gain is not None and gain > (0.0 if is_newer else self._config.min_gap):
                ahead[depth] = gain
            elif gain is not None and is_newer:
                newer.append(depth)
            elif gain is not None:
                del by_depth[depth]
        if ahead or not newer:
            for depth in newer:
                del by_depth[depth]
            return max(ahead, key=ahead.__getitem__) if ahead else 0
        self._plain[batch_size] = _StepRate()  # plain measured before, maybe under another load: measure it afresh
        return 0

    def speculative_rate(self, batch_size: int, k: int, expected_k: float) -> "_StepRate | None":
        """The tokens/s kept for depth k's warm steps at this batch size; None without them, with overruling off, or
        measured under acceptance the plan's E[tokens | k] (`expected_k`) no longer gives ACCEPTANCE_KEEP of."""
        rate = self._speculative.get(batch_size, {}).get(k) if self._enabled else None
        if rate is None or expected_k - 1.0 < ACCEPTANCE_KEEP * (rate.tokens / (rate.weight * batch_size) - 1.0):
            return None
        return rate

    def forget_speculative(self) -> None:
        """Drop the speculative evidence everywhere (the weights changed: acceptance did too)."""
        self._speculative.clear()
