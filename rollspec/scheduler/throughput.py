"""The speculation throughput formulas, shared by the depth scheduler and sim/.

For one sequence drafting k tokens with conditional per-position acceptance
alpha_j = P(accept j | accepted j-1), the tokens emitted by one verify step are

    E[tokens | k] = 1 + sum_{j<=k} prod_{i<=j} alpha_i

(the accepted prefix plus the one token the target always contributes), and the step takes

    step_s(k) = k * c_draft(B) + c_target(B, k + 1).

The product of pooled conditional rates is the pooled probability of reaching position j
(chain rule), so the formula stays exact for a batch whose rows accept at different rates.
"""

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray


def expected_tokens(alphas: ArrayLike) -> NDArray[np.float64]:
    """E[tokens | k] for k = 0 .. len(alphas), from conditional per-position acceptance (expected_token_list)."""
    return np.array(expected_token_list(np.asarray(alphas, dtype=np.float64).tolist()))


def expected_token_list(alphas: Sequence[float]) -> list[float]:
    """expected_tokens in Python floats, the products and sums in numpy's order: the depth scheduler computes this once
    per plan, on ~9 values."""
    out, reach, total = [1.0], 1.0, 0.0
    for alpha in alphas:
        reach *= alpha
        total += reach
        out.append(1.0 + total)
    return out


def step_time_s(draft_s: float, target_s_by_q: ArrayLike) -> NDArray[np.float64]:
    """Step time for k = 0 .. K given c_draft (per drafted token) and c_target for q = 1 .. K+1."""
    target = np.asarray(target_s_by_q, dtype=np.float64)
    return np.arange(target.size) * draft_s + target


def tokens_per_s(batch_size: int, alphas: ArrayLike, draft_s: float, target_s_by_q: ArrayLike) -> NDArray[np.float64]:
    """Predicted emitted tokens per second of the whole batch for k = 0 .. len(alphas)."""
    expected = expected_tokens(alphas)
    step_s = step_time_s(draft_s, target_s_by_q)
    assert expected.shape == step_s.shape, (expected.shape, step_s.shape)
    return batch_size * expected / step_s


def best_depth(alphas: ArrayLike, draft_s: float, target_s_by_q: ArrayLike) -> int:
    """The k in [0, len(alphas)] with the highest predicted tokens/s; ties go to the smaller k."""
    return int(np.argmax(tokens_per_s(1, alphas, draft_s, target_s_by_q)))
