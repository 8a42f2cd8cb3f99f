"""Online per-position acceptance estimate for one drafter, and the generative model it assumes."""

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rollspec.scheduler.config import AcceptanceConfig

# Steps folded at once by observe_steps: decay ** steps stays far from underflow (a position last reached
# at the start of a long fold keeps its counts).
_FOLD_CHUNK_STEPS = 256


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
        self._accepted = np.zeros(num_positions)
        self._attempted = np.zeros(num_positions)
        self._last_step = np.zeros(num_positions, dtype=np.int64)
        self._step = 0
        self._alphas = np.full(num_positions, config.prior_alpha)
        self._alphas.flags.writeable = False

    @property
    def num_positions(self) -> int:
        return self._alphas.size

    @property
    def num_steps(self) -> int:
        """Steps observed so far (the estimator's clock)."""
        return self._step

    @property
    def alphas(self) -> NDArray[np.float64]:
        """Current estimate per position (read-only view, replaced on every update)."""
        return self._alphas

    @property
    def evidence(self) -> NDArray[np.float64]:
        """Discounted attempts per position as of its last observation: how much data its estimate rests on.

        Not aged further while the position goes unobserved, like the estimate itself.
        """
        return self._attempted.copy()

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
        alphas, attempted, prior = self._alphas.tolist(), self._attempted.tolist(), self._config.prior_alpha
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
        counts = np.bincount(np.asarray(num_accepted, dtype=np.int64), minlength=k + 1)
        assert counts.size == k + 1, f"num_accepted exceeds k={k}"
        # survivors[m] = rows that accepted at least m drafted tokens, m = 0 .. k.
        survivors = np.cumsum(counts[::-1])[::-1]
        attempted = survivors[:-1]
        # survivors never increase, so the positions any row reached form a prefix 1 .. m.
        m = int(np.count_nonzero(attempted))
        if m == 0:
            return
        age_factor = self._decay ** (self._step - self._last_step[:m])
        self._accepted[:m] = self._accepted[:m] * age_factor + survivors[1 : m + 1]
        self._attempted[:m] = self._attempted[:m] * age_factor + attempted[:m]
        self._last_step[:m] = self._step
        self._refresh()

    def observe_steps(self, k: int, num_accepted_NB: Sequence[Sequence[int]]) -> None:
        """Count n consecutive verify steps at depth k, row i of step t accepting num_accepted_NB[t][i], as n calls
        of `observe` would (to rounding), with the estimates refreshed once.

        A position's lazily discounted sums after the run are its old sums aged to the last step that reached it
        plus each step's counts aged to that step: weighting every row by its step's age at the run's end, a
        position's sums are suffix sums of one weighted histogram of accepted counts. O(rows + k) in Python floats
        where a step-by-step fold is O(steps * k) (each `observe` is ~10 numpy calls on arrays of k_max, ~10-30 us a
        step inside the engine at B = 1)."""
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
        accepted, attempted, last = self._accepted.tolist(), self._attempted.tolist(), self._last_step.tolist()
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
        self._accepted[:], self._attempted[:], self._last_step[:] = accepted, attempted, last

    def advance(self, num_steps: int = 1) -> None:
        """Count plain steps (k = 0): the clock moves, no position was attempted."""
        self._step += num_steps

    def discount(self, keep: float) -> None:
        """Scale all evidence by `keep` in [0, 1]: the means stay, the prior and new evidence weigh more."""
        assert 0.0 <= keep <= 1.0, keep
        self._accepted *= keep
        self._attempted *= keep
        self._refresh()

    def _refresh(self) -> None:
        w = self._config.prior_weight
        alphas = (self._accepted + w * self._config.prior_alpha) / (self._attempted + w)
        alphas.flags.writeable = False
        self._alphas = alphas


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
