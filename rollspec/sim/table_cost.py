"""Step costs from measured tables, priced by the scheduler's own CostModel (same interpolation, same floors)."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from rollspec.scheduler import CostModel
from rollspec.scheduler.interpolation import PiecewiseLinear


@dataclass(frozen=True, slots=True)
class CostLevel:
    """One profile: c_target(B, q) and c_draft(B) measured with `context_tokens` cached per row."""

    context_tokens: float
    target_s: Mapping[tuple[int, int], float]
    draft_s: Mapping[int, float]


class TableCost:
    """c_target(B, q), c_draft(B) and prefill(rows) interpolated from profiles measured on a real device.

    Each profile level goes through `scheduler.CostModel.from_profile`, so a step is priced
    exactly as the live depth scheduler would from the same profile. `draft_admit_s[B]` is the
    measured extra cost of the first speculative step after rows join a batch of B. Attention makes a step
    dearer as contexts grow; with two or more levels the cost is linear in the context
    between (and beyond) them. `context_kind` says which context the device pays for:
    "longest" for an engine that pads rows to the longest one (the built-in engine), "mean"
    for paged attention. `observe` does not refine the model: the tables are the
    simulation's truth, so their prediction error is zero by construction.
    """

    def __init__(self, *, levels: Sequence[CostLevel], prefill_s: Mapping[int, float],
                 context_kind: str = "longest", draft_admit_s: Mapping[int, float] | None = None) -> None:
        assert levels and context_kind in ("longest", "mean"), (len(levels), context_kind)
        ordered = sorted(levels, key=lambda level: level.context_tokens)
        self._contexts = np.array([level.context_tokens for level in ordered])
        assert np.all(np.diff(self._contexts) > 0), self._contexts
        self._models = [CostModel.from_profile(level.target_s, level.draft_s) for level in ordered]
        rows = sorted(prefill_s)
        self._prefill = PiecewiseLinear(rows, [prefill_s[r] for r in rows])
        admit = dict(draft_admit_s or {1: 0.0})
        self._draft_admit = PiecewiseLinear(sorted(admit), [admit[b] for b in sorted(admit)])
        self._context_kind = context_kind
        self._weights = self._weights_at(float(self._contexts[0]))

    @classmethod
    def single(cls, target_s: Mapping[tuple[int, int], float], draft_s: Mapping[int, float],
               prefill_s: Mapping[int, float]) -> "TableCost":
        """One profile, no context dependence."""
        return cls(levels=[CostLevel(0.0, target_s, draft_s)], prefill_s=prefill_s)

    def set_context(self, mean_tokens: float, longest_tokens: float) -> None:
        self._weights = self._weights_at(longest_tokens if self._context_kind == "longest" else mean_tokens)

    def target_s(self, batch_size: int, q: int) -> float:
        return self._blend(lambda model: model.target_s(batch_size, q))

    def draft_s(self, batch_size: int) -> float:
        return self._blend(lambda model: model.draft_s(batch_size))

    def drafting_s(self, batch_size: int, k: int) -> float:
        return self._blend(lambda model: model.drafting_s(batch_size, k)) if k else 0.0

    def step_s(self, batch_size: int, k_max: int) -> NDArray[np.float64]:
        return self._blend(lambda model: model.step_s(batch_size, k_max))

    def observe(self, batch_size: int, k: int, draft_time_s: float, target_time_s: float) -> None:
        pass

    def prefill_s(self, num_rows: int, prompt_tokens: int) -> float:
        return float(self._prefill(num_rows))

    def draft_admit_s(self, batch_size: int, num_new: int, context_tokens: float) -> float:
        # Measured on an engine whose drafter pads its catch-up over every live row, so it follows the batch size.
        return float(self._draft_admit(batch_size)) if num_new else 0.0

    def _weights_at(self, context: float) -> list[tuple[int, float]]:
        # Linear between the two levels around `context`, continuing the nearest segment beyond them.
        if len(self._models) == 1:
            return [(0, 1.0)]
        hi = int(np.clip(np.searchsorted(self._contexts, context), 1, len(self._contexts) - 1))
        lo = hi - 1
        t = (context - self._contexts[lo]) / (self._contexts[hi] - self._contexts[lo])
        return [(lo, 1.0 - t), (hi, t)]

    def _blend(self, price):
        total = sum(weight * price(self._models[i]) for i, weight in self._weights)
        # A long extrapolation left of the first level must not price a step at or below zero.
        return np.maximum(total, 1e-6) if isinstance(total, np.ndarray) else max(float(total), 1e-6)
