"""Online per-position acceptance estimate for one drafter, and the generative model it assumes."""

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rollspec.scheduler.config import AcceptanceConfig

# Steps folded at once by observe_steps: decay ** steps stays far from underflow (a position last reached
# at the start of a long fold keeps its counts).
_FOLD_CHUNK_STEPS = 256
# Ages whose decay factor observe keeps (steps since a position was last reached: a handful recur).
_MAX_POWERS = 1024


class AcceptanceEstimator:
    """Conditional acceptance alpha_j = P(accept j | accepted j-1) per draft position j = 1 .. num_positions.

    Invariants:
    - A row with `num_accepted = n` from a depth-k step attempted positions 1 .. min(n+1, k)
      and accepted 1 .. n; nothing else is counted, so rows cut short by an earlier
      rejection never count against a later position.
    - Evidence is discounted by its age in steps (half-life from the config). Discounting is
      applied lazily when a position next receives evidence: between observations the
      estimate of a position stays at its last value rather than drifting to the prior, so a
      position the scheduler stopped using does not by itself pull k back up. Re-checking such
      positions is the depth scheduler's explicit probe rule.
    - alphas = (accepted + w * prior) / (attempted + w), always in [0, 1].
    """

    def __init__(self, num_positions: int, config: AcceptanceConfig) -> None:
        assert num_positions >= 0, num_positions
        self._config = config
        self._decay = 0.5 ** (1.0 / config.half_life_steps)
        # Python floats, not arrays: every step reads or moves a few of k_max values, where each numpy call costs
        # several microseconds inside the engine (an observe of ~20 of them was ~70 us at B = 4 on the zoo).
        self._accepted = [0.0] * num_positions
        self._attempted = [0.0] * num_positions
        self._last_step = [0] * num_positions
        self._step = 0
        self._alpha_list = [config.prior_alpha] * num_positions
        self._alphas: NDArray[np.float64] | None = None  # the array view of _alpha_list, built when read
        self._powers: dict[int, float] = {}  # decay ** age as numpy's array power gives it (observe)

    @property
    def num_positions(self) -> int:
        return len(self._alpha_list)

    @property
    def num_steps(self) -> int:
        """Steps observed so far (the estimator's clock)."""
        return self._step

    @property
    def alphas(self) -> NDArray[np.float64]:
        """Current estimate per position (read-only view, replaced on every update)."""
        if self._alphas is None:
            alphas = np.array(self._alpha_list, dtype=np.float64)
            alphas.flags.writeable = False
            self._alphas = alphas
        return self._alphas

    @property
    def evidence(self) -> NDArray[np.float64]:
        """Discounted attempts per position as of its last observation: how much data its estimate rests on.

        Not aged further while the position goes unobserved, like the estimate itself.
        """
        return np.array(self._attempted, dtype=np.float64)

    def planning_alphas(self, min_evidence_rows: float) -> NDArray[np.float64]:
        """The acceptance a depth is planned with: the estimate, floored where fewer than `min_evidence_rows` rows
        are in at the prior, and, for thin positions deeper than the deepest well-observed one, at that position's
        estimate (conditional acceptance changes slowly with depth; on the zoo's EAGLE head at B = 1 it
        is ~0.85 at positions 1-3, and planning positions 4-8 at the 0.6 prior kept k at 3 where 8 was
        best: 0.75 of it). Planning a depth with them is how they get observed and corrected."""
        return np.array(self.planning_alpha_list(min_evidence_rows))

    def planning_alpha_list(self, min_evidence_rows: float) -> list[float]:
        """planning_alphas in Python floats: once per plan, where a dozen numpy calls on arrays of k_max cost ~50 us
        inside the engine."""
        alphas, attempted, prior = self._alpha_list, self._attempted, self._config.prior_alpha
        solid = [j for j, rows in enumerate(attempted) if rows >= min_evidence_rows]
        deepest = solid[-1] if solid else len(alphas)
        deep_floor = max(prior, alphas[deepest]) if solid else prior
        return [alpha if rows >= min_evidence_rows else max(alpha, deep_floor if j > deepest else prior)
                for j, (alpha, rows) in enumerate(zip(alphas, attempted))]

    def observe(self, k: int, num_accepted: Sequence[int] | NDArray[np.integer]) -> None:
        """Count one verify step at depth k. Every call, k = 0 included, advances the clock by one step."""
        self._step += 1
        if k == 0:
            return
        assert 1 <= k <= self.num_positions, (k, self.num_positions)
        counts, top = [0] * (k + 1), -1
        for n in num_accepted:
            assert 0 <= n <= k, f"num_accepted {n} exceeds k={k}"
            counts[n] += 1
            top = n if n > top else top
        # Position j + 1 (j = 0 .. k - 1) was attempted by the rows that accepted at least j drafts and accepted by
        # those that accepted at least j + 1: the positions any row reached form a prefix 1 .. m.
        m = min(top + 1, k)
        if m == 0:
            return
        accepted, attempted, last, step = self._accepted, self._attempted, self._last_step, self._step
        reached = sum(counts[m:])  # rows that accepted at least m drafts
        for j in range(m - 1, -1, -1):
            survived, reached = reached, reached + counts[j]
            age_factor = self._power(step - last[j])
            accepted[j] = accepted[j] * age_factor + survived
            attempted[j] = attempted[j] * age_factor + reached
            last[j] = step
        self._refresh()

    def _power(self, age: int) -> float:
        """decay ** age exactly as numpy's array power gives it (it differs from Python's in the last bit for some
        ages, and the estimates are kept bit for bit as they were computed in numpy)."""
        power = self._powers.get(age)
        if power is None:
            power = float(self._decay ** np.array([age], dtype=np.int64)[0])
            if len(self._powers) < _MAX_POWERS:
                self._powers[age] = power
        return power

    def observe_steps(self, k: int, num_accepted_NB: Sequence[Sequence[int]]) -> None:
        """Count n consecutive verify steps at depth k, row i of step t accepting num_accepted_NB[t][i], as n calls
        of `observe` would (to rounding), with the estimates refreshed once.

        A position's lazily discounted sums after the run are its old sums aged to the last step that reached it
        plus each step's counts aged to that step: weighting every row by its step's age at the run's end, a
        position's sums are suffix sums of one weighted histogram of accepted counts. O(rows + k) in Python floats
        where a step-by-step fold is O(steps * k) (each `observe` was ~10-30 us a step inside the engine at B = 1 when
        it ran in numpy)."""
        assert 1 <= k <= self.num_positions, (k, self.num_positions)
        for start in range(0, len(num_accepted_NB), _FOLD_CHUNK_STEPS):
            self._observe_chunk(k, num_accepted_NB[start: start + _FOLD_CHUNK_STEPS])
        self._refresh()

    def _observe_chunk(self, k: int, num_accepted_NB: Sequence[Sequence[int]]) -> None:
        decay, first, n = self._decay, self._step + 1, len(num_accepted_NB)
        end = first + n - 1
        weight_by_count = [0.0] * (k + 1)  # sum over rows accepting n drafts of decay ** (age at the run's end)
        last_by_count = [0] * (k + 1)  # the last step a row accepted exactly n drafts
        for step, row in enumerate(num_accepted_NB, first):
            weight = decay ** (end - step)
            for count in row:
                weight_by_count[count] += weight  # IndexError for a count over k
                last_by_count[count] = step
        accepted, attempted, last = self._accepted, self._attempted, self._last_step
        reached, reached_last = weight_by_count[k], last_by_count[k]  # rows accepting at least j + 1, suffix sums
        for j in range(k - 1, -1, -1):
            survived = reached  # rows that accepted position j + 1
            reached += weight_by_count[j]
            reached_last = max(reached_last, last_by_count[j])
            if not reached_last:  # no row reached position j + 1
                continue
            # Age everything to the last step that reached it (position j + 1's clock), as the step-by-step fold does.
            to_last = decay ** (end - reached_last)
            age_factor = decay ** (reached_last - last[j])
            accepted[j] = accepted[j] * age_factor + survived / to_last
            attempted[j] = attempted[j] * age_factor + reached / to_last
            last[j] = reached_last
        self._step = end

    def advance(self, num_steps: int = 1) -> None:
        """Count plain steps (k = 0): the clock moves, no position was attempted."""
        self._step += num_steps

    def discount(self, keep: float) -> None:
        """Scale all evidence by `keep` in [0, 1]: the means stay, the prior and new evidence weigh more."""
        assert 0.0 <= keep <= 1.0, keep
        self._accepted = [a * keep for a in self._accepted]
        self._attempted = [a * keep for a in self._attempted]
        self._refresh()

    def _refresh(self) -> None:
        w = self._config.prior_weight
        prior = w * self._config.prior_alpha
        self._alpha_list = [(a + prior) / (t + w) for a, t in zip(self._accepted, self._attempted)]
        self._alphas = None


def sample_num_accepted(rng: np.random.Generator, alphas: ArrayLike, k: int, batch_size: int) -> NDArray[np.int64]:
    """Draw num_accepted for `batch_size` rows drafting k tokens, position j accepted w.p. alphas[j-1] given j-1.

    The model the estimator assumes; used by tests and by sim/ to generate acceptance.
    """
    if k == 0:
        return np.zeros(batch_size, dtype=np.int64)
    alpha = np.asarray(alphas, dtype=np.float64)[:k]
    assert alpha.size == k, (alpha.size, k)
    accepted = rng.random((batch_size, k)) < alpha
    # The accepted prefix ends at the first rejection.
    num_accepted: NDArray[np.int64] = np.cumprod(accepted, axis=1).sum(axis=1).astype(np.int64)
    return num_accepted
