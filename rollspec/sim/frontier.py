"""Where speculation stops paying: speedup over batch size x acceptance length at a fixed batch, from the formulas."""

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from rollspec.scheduler import tokens_per_s
from rollspec.sim.acceptance_profile import constant_alphas
from rollspec.sim.step_cost import StepCost


@dataclass(frozen=True, slots=True)
class Frontier:
    """Speedup of speculation over plain decoding; rows = acceptance lengths, columns = batch sizes.

    `fixed_speedup` drafts k every step (as vLLM does); `adaptive_speedup` takes the best
    k in [0, k_max] per cell, which is never below 1 (k = 0 is plain decoding), and
    `best_k` is that k. The frontier is the 1.0 contour of `fixed_speedup`.
    """

    batch_sizes: NDArray[np.int64]
    acceptance_lengths: NDArray[np.float64]
    k: int
    context_tokens: float
    fixed_speedup: NDArray[np.float64]
    adaptive_speedup: NDArray[np.float64]
    best_k: NDArray[np.int64]
    max_batch_size: float  # most rows a replica can run at this context (KV capacity, profiled range)

    def break_even_batch(self, acceptance_length: float) -> float:
        """Smallest batch size on the grid where fixed-k speculation no longer pays (inf if it always pays).

        Only batch sizes up to max_batch_size count: beyond it the replica cannot run them.
        """
        row = int(np.argmin(np.abs(self.acceptance_lengths - acceptance_length)))
        losing = np.flatnonzero((self.fixed_speedup[row] < 1.0) & (self.batch_sizes <= self.max_batch_size))
        return float(self.batch_sizes[losing[0]]) if losing.size else float("inf")


def speculation_frontier(cost: StepCost, *, k: int, k_max: int, context_tokens: float,
                         batch_sizes: NDArray[np.int64], acceptance_lengths: NDArray[np.float64],
                         max_batch_size: float = float("inf")) -> Frontier:
    """Evaluate the scheduler's tokens/s formula on the grid, at a steady batch with `context_tokens` cached per row.

    Acceptance length L is read as constant conditional acceptance at every position
    (`constant_alphas`), so L and k fix the whole per-position profile.
    """
    cost.set_context(context_tokens, context_tokens)
    depth = max(k, k_max)
    shape = (acceptance_lengths.size, batch_sizes.size)
    fixed, adaptive, best = np.zeros(shape), np.zeros(shape), np.zeros(shape, dtype=np.int64)
    for i, length in enumerate(acceptance_lengths):
        alphas = constant_alphas(float(length), k, depth)
        for j, batch_size in enumerate(batch_sizes):
            b = int(batch_size)
            target = [cost.target_s(b, q) for q in range(1, depth + 2)]
            rates = tokens_per_s(b, alphas, cost.draft_s(b), target)
            fixed[i, j] = rates[k] / rates[0]
            best[i, j] = int(np.argmax(rates[: k_max + 1]))
            adaptive[i, j] = rates[best[i, j]] / rates[0]
    return Frontier(batch_sizes=batch_sizes, acceptance_lengths=acceptance_lengths, k=k,
                    context_tokens=context_tokens, fixed_speedup=fixed, adaptive_speedup=adaptive, best_k=best,
                    max_batch_size=max_batch_size)
