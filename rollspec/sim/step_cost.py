"""The cost interface the simulator drives: the scheduler's cost-model methods plus what a drain needs.

`DepthScheduler` calls `step_s(B, k_max)` to plan and `observe(...)` after each step, so any
object with these methods can be handed to the scheduler's depth policy in place of its
measured `CostModel`. The simulator also needs the two parts of a step separately, the
prefill of admitted rows, and a way to say how long the cached contexts are: a step's
attention cost grows with them, with the mean for a paged-attention engine (vLLM reads each
row's own KV) and with the longest row for one that pads rows to a common length (ours).
"""

from typing import Protocol

import numpy as np
from numpy.typing import NDArray


class StepCost(Protocol):
    """Seconds of the pieces of a rollout replica's work; the simulator's truth and the depth policy's belief."""

    def target_s(self, batch_size: int, q: int) -> float:
        """One target forward verifying q tokens for each of batch_size rows."""
        ...

    def draft_s(self, batch_size: int) -> float:
        """Drafting one position for batch_size rows."""
        ...

    def drafting_s(self, batch_size: int, k: int) -> float:
        """Drafting k positions for batch_size rows (what the depth scheduler splits a step's drafting time by)."""
        ...

    def step_s(self, batch_size: int, k_max: int) -> NDArray[np.float64]:
        """k * draft_s(B) + target_s(B, k + 1) for k = 0 .. k_max."""
        ...

    def observe(self, batch_size: int, k: int, draft_time_s: float, target_time_s: float) -> None:
        """A measured step; a simulated truth has nothing to learn from its own times."""
        ...

    def set_context(self, mean_tokens: float, longest_tokens: float) -> None:
        """Mean and longest cached tokens per live row, for the steps priced next."""
        ...

    def prefill_s(self, num_rows: int, prompt_tokens: int) -> float:
        """Admitting num_rows requests of prompt_tokens each (their prompt forward)."""
        ...

    def draft_admit_s(self, batch_size: int, num_new: int, context_tokens: float) -> float:
        """Extra drafting time of the first speculative step after num_new rows (context_tokens each) joined
        a batch of batch_size: the drafter has not seen their context yet and must catch up on it."""
        ...
