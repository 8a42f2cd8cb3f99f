"""Analytic step costs of a GPU rollout replica: bytes over bandwidth vs FLOPs over FLOP/s, whichever is slower."""

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rollspec.sim.hardware import GpuSpec, ModelSpec, SpecError


class RooflineCost:
    """c_target(B, q) and c_draft(B) of one replica of `num_gpus` GPUs (tensor/expert parallel), from a roofline.

    A forward over q new tokens for each of B rows, with C cached tokens per row, streams
    the weights it touches plus B * C tokens of KV, and does model.flops(B * q, C) FLOPs.
    Its time is the larger of bytes / achieved bandwidth and FLOPs / achieved FLOP/s,
    plus a fixed per-forward overhead (kernel launches, collectives, sampling) that the
    roofline does not see. The replica's GPUs split bytes and FLOPs evenly.

    Verify width q is nearly free while the step is memory-bound (weights and KV are read
    once for all q tokens) and costs q times more once compute-bound: this crossover in
    B * q, and the KV term that keeps long-context decode memory-bound at large B, decide
    where speculation stops paying.

    Implements the scheduler's cost-model methods (see step_cost.StepCost), so the depth
    policy plans on it directly. It is the truth of the simulation; `observe` learns nothing.
    """

    def __init__(self, *, target: ModelSpec, draft: ModelSpec | None, gpu: GpuSpec, num_gpus: int,
                 target_overhead_s: float, draft_overhead_s: float) -> None:
        if num_gpus < 1 or target_overhead_s < 0 or draft_overhead_s < 0:
            raise SpecError(f"roofline needs num_gpus >= 1 and overheads >= 0, got {num_gpus!r}, "
                            f"{target_overhead_s!r}, {draft_overhead_s!r}")
        self.target = target
        self.draft = draft
        self.gpu = gpu
        self.num_gpus = num_gpus
        self.target_overhead_s = target_overhead_s
        self.draft_overhead_s = draft_overhead_s
        self._bytes_per_s = num_gpus * gpu.hbm_bytes_per_s * gpu.bandwidth_efficiency
        self._flops_per_s = num_gpus * gpu.flops_per_s * gpu.flops_efficiency
        self._context = 0.0
        self._memo: dict[tuple[int, int], NDArray[np.float64]] = {}

    @property
    def context_tokens(self) -> float:
        return self._context

    def set_context(self, mean_tokens: float, longest_tokens: float) -> None:
        # Paged attention reads each row's own KV, so the mean is what costs.
        assert mean_tokens >= 0, mean_tokens
        if mean_tokens != self._context:
            self._context = float(mean_tokens)
            self._memo.clear()

    def forward_s(self, model: ModelSpec, batch_size: int, q: ArrayLike, context_tokens: float) -> NDArray[np.float64]:
        """Roofline seconds of one forward of `model` (no overhead), for one verify width q or an array of them."""
        num_tokens = batch_size * np.asarray(q, dtype=np.float64)
        num_bytes = model.weight_bytes_read(num_tokens) + batch_size * context_tokens * model.kv_bytes_per_token
        flops = model.flops(num_tokens, context_tokens)
        return np.maximum(num_bytes / self._bytes_per_s, flops / self._flops_per_s)

    def is_compute_bound(self, batch_size: int, q: int) -> bool:
        """Whether the target forward at the current context is limited by FLOPs rather than bytes."""
        model, context = self.target, self._context
        num_bytes = model.weight_bytes_read(batch_size * q) + batch_size * context * model.kv_bytes_per_token
        return model.flops(batch_size * q, context) / self._flops_per_s > num_bytes / self._bytes_per_s

    def target_s(self, batch_size: int, q: int) -> float:
        return float(self.forward_s(self.target, batch_size, q, self._context)) + self.target_overhead_s

    def draft_s(self, batch_size: int) -> float:
        if self.draft is None:
            return self.draft_overhead_s
        return float(self.forward_s(self.draft, batch_size, 1, self._context)) + self.draft_overhead_s

    def drafting_s(self, batch_size: int, k: int) -> float:
        return k * self.draft_s(batch_size)

    def step_s(self, batch_size: int, k_max: int) -> NDArray[np.float64]:
        key = (batch_size, k_max)
        cached = self._memo.get(key)
        if cached is None:
            q = np.arange(1, k_max + 2)
            target = self.forward_s(self.target, batch_size, q, self._context) + self.target_overhead_s
            cached = (q - 1) * self.draft_s(batch_size) + target
            self._memo[key] = cached
        return cached

    def observe(self, batch_size: int, k: int, draft_time_s: float, target_time_s: float) -> None:
        pass

    def draft_admit_s(self, batch_size: int, num_new: int, context_tokens: float) -> float:
        # A paged drafter (vLLM's EAGLE / draft model) prefills only the new rows' context.
        if self.draft is None or num_new == 0:
            return 0.0
        return float(self.forward_s(self.draft, num_new, context_tokens, context_tokens / 2))

    def prefill_s(self, num_rows: int, prompt_tokens: int) -> float:
        # Causal attention over the prompt: each token sees half the prompt on average.
        return float(self.forward_s(self.target, num_rows, prompt_tokens, prompt_tokens / 2)) + self.target_overhead_s
