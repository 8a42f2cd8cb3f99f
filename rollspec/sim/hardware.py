"""What the roofline needs to know about an accelerator and about a transformer's shape."""

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


class SpecError(ValueError):
    """A hardware or model spec that cannot price a step (non-positive sizes, efficiencies outside (0, 1])."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuSpec:
    """One accelerator: peak HBM bandwidth and dense FLOP/s, and the fractions of each a decode step achieves.

    Decode kernels reach well below peak (small GEMMs, attention over paged KV), so the
    efficiencies are the assumptions that matter most; they are per scenario, written out.
    """

    name: str
    hbm_bytes_per_s: float
    flops_per_s: float
    bandwidth_efficiency: float
    flops_efficiency: float

    def __post_init__(self) -> None:
        if self.hbm_bytes_per_s <= 0 or self.flops_per_s <= 0:
            raise SpecError(f"GPU {self.name!r}: bandwidth and FLOP/s must be > 0, got "
                            f"{self.hbm_bytes_per_s!r} B/s and {self.flops_per_s!r} FLOP/s")
        for label, value in (("bandwidth_efficiency", self.bandwidth_efficiency),
                             ("flops_efficiency", self.flops_efficiency)):
            if not 0 < value <= 1:
                raise SpecError(f"GPU {self.name!r}: {label} must be in (0, 1], got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    """A decoder's parameter count and attention shape; routed experts make it a mixture of experts.

    `num_params` is every weight the forward may read; `num_active_params` the weights one
    token multiplies (equal for a dense model). For an MoE, `num_expert_params` of the
    total sit in `num_experts` routed experts per layer, `experts_per_token` chosen per token.
    """

    name: str
    num_params: float
    num_active_params: float
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    bytes_per_param: float
    kv_bytes_per_value: float
    num_experts: int = 0
    experts_per_token: int = 0
    num_expert_params: float = 0.0

    def __post_init__(self) -> None:
        sizes = (self.num_params, self.num_active_params, self.num_layers, self.num_heads, self.num_kv_heads,
                 self.head_dim, self.bytes_per_param, self.kv_bytes_per_value)
        if min(sizes) <= 0:
            raise SpecError(f"model {self.name!r}: sizes must be > 0, got {sizes!r}")
        if self.num_active_params > self.num_params:
            raise SpecError(f"model {self.name!r}: active params {self.num_active_params!r} exceed "
                            f"total {self.num_params!r}")
        if self.is_moe and not (0 < self.experts_per_token <= self.num_experts
                                and 0 < self.num_expert_params < self.num_params):
            raise SpecError(f"model {self.name!r}: MoE needs 0 < experts_per_token <= num_experts and "
                            f"0 < num_expert_params < num_params, got {self.experts_per_token}, "
                            f"{self.num_experts}, {self.num_expert_params!r}")

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def kv_bytes_per_token(self) -> float:
        """Bytes of K and V one cached token occupies across all layers."""
        return 2.0 * self.num_layers * self.num_kv_heads * self.head_dim * self.kv_bytes_per_value

    def weight_bytes_read(self, num_tokens: ArrayLike) -> ArrayLike:
        """Bytes of weights one forward over num_tokens tokens streams from HBM.

        Dense: all of them. MoE: the dense part plus the experts at least one token routes
        to; with uniform routing an expert is missed by all tokens with probability
        (1 - experts_per_token / num_experts) ** num_tokens. This is why a verify over
        q tokens per row costs an MoE more than a decode at small batch: it wakes more experts.
        """
        if not self.is_moe:
            return self.num_params * self.bytes_per_param + 0.0 * np.asarray(num_tokens)
        touched = 1.0 - (1.0 - self.experts_per_token / self.num_experts) ** np.asarray(num_tokens)
        dense = self.num_params - self.num_expert_params
        return (dense + self.num_expert_params * touched) * self.bytes_per_param

    def flops(self, num_tokens: ArrayLike, context_tokens: float) -> ArrayLike:
        """FLOPs of one forward over num_tokens new tokens, each attending to context_tokens cached ones.

        2 per active weight per token (multiply-add) plus QK^T and PV over the context.
        """
        attention = 4.0 * self.num_layers * self.num_heads * self.head_dim * context_tokens
        return np.asarray(num_tokens) * (2.0 * self.num_active_params + attention)
