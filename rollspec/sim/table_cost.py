"""Step costs from measured tables, priced by the scheduler's own CostModel (same interpolation, same floors)."""

from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from rollspec.scheduler import CostModel
from rollspec.scheduler.interpolation import PiecewiseLinear


class TableCost:
    """c_target(B, q), c_draft(B) and prefill(rows) interpolated from a profile measured on a real device.

    Target and draft go through `scheduler.CostModel.from_profile`, so the simulator prices
    a step exactly as the live depth scheduler would from the same profile. The profile
    is taken at the workload's own context lengths; `set_context_tokens` is ignored.
    `observe` does not refine the model: the table is the simulation's truth, so its
    prediction error is zero by construction and there is nothing to correct.
    """

    def __init__(self, *, target_s: Mapping[tuple[int, int], float], draft_s: Mapping[int, float],
                 prefill_s: Mapping[int, float]) -> None:
        self._model = CostModel.from_profile(target_s, draft_s)
        rows = sorted(prefill_s)
        self._prefill = PiecewiseLinear(rows, [prefill_s[r] for r in rows])

    def target_s(self, batch_size: int, q: int) -> float:
        return self._model.target_s(batch_size, q)

    def draft_s(self, batch_size: int) -> float:
        return self._model.draft_s(batch_size)

    def step_s(self, batch_size: int, k_max: int) -> NDArray[np.float64]:
        return self._model.step_s(batch_size, k_max)

    def observe(self, batch_size: int, k: int, draft_time_s: float, target_time_s: float) -> None:
        pass

    def set_context_tokens(self, mean_context_tokens: float) -> None:
        pass

    def prefill_s(self, num_rows: int, prompt_tokens: int) -> float:
        return float(self._prefill(num_rows))
