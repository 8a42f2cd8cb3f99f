"""Per-position acceptance from a reported mean acceptance length, through the scheduler's throughput formula."""

import numpy as np
from numpy.typing import NDArray

from rollspec.scheduler import expected_tokens


class AcceptanceLengthError(ValueError):
    """An acceptance length no depth k can produce (outside [1, k + 1])."""


def constant_alphas(acceptance_length: float, k: int, num_positions: int) -> NDArray[np.float64]:
    """The constant conditional acceptance alpha with E[tokens | k] = acceptance_length, for num_positions positions.

    Papers report one number, the mean tokens per verify step at their depth k. Assuming
    the same conditional acceptance at every position is the simplest reading; positions
    past k (which an adaptive depth may use) are assumed to accept at the same rate.
    """
    if k < 1 or not 1.0 <= acceptance_length <= k + 1:
        raise AcceptanceLengthError(f"acceptance length must be in [1, k + 1] = [1, {k + 1}] for k = {k}, "
                                    f"got {acceptance_length!r}")
    lo, hi = 0.0, 1.0
    for _ in range(60):  # bisection: E[tokens | k] is increasing in alpha
        mid = (lo + hi) / 2
        if expected_tokens(np.full(k, mid))[k] < acceptance_length:
            lo = mid
        else:
            hi = mid
    return np.full(num_positions, (lo + hi) / 2)


def acceptance_length(alphas: NDArray[np.float64], k: int) -> float:
    """E[tokens | k] of per-position acceptance alphas (the scheduler's formula)."""
    return float(expected_tokens(np.asarray(alphas)[:k])[k])
