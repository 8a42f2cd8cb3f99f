"""The learner group's frozen config, built by launch/ from its validated pydantic model."""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from rollspec.actors.learner_env import default_extensions_dir
from rollspec.rl.grpo_step import GrpoLossConfig
from rollspec.transport import NO_FAULTS, FaultPlan


class LearnerConfigError(ValueError):
    """A learner config field outside its allowed range."""

    def __init__(self, name: str, value: object, expected: str):
        super().__init__(f"LearnerConfig.{name} must be {expected}, got {value!r}")
        self.name, self.value, self.expected = name, value, expected


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LearnerConfig:
    """How R learner ranks train the policy with DeepSpeed ZeRO.

    One optimizer step per `train_step` (the GRPO loss relies on this; see `rl.grpo_step`), taken
    after accumulating gradients over however many micro-batches of `micro_batch_size` sequences
    the batch needs per rank. `grad_clip` is the max global gradient norm (math.inf: no clipping).
    The KL reference model is loaded (a frozen full copy per rank) only when
    `loss.policy_loss.kl_coef > 0`.
    """

    zero_stage: Literal[1, 2, 3] = 2
    lr: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    micro_batch_size: int = 8
    dtype: Literal["float32", "bfloat16"] = "float32"
    num_ranks: int = 1
    cpus_per_rank: float = 1.0
    seed: int = 0
    loss: GrpoLossConfig = GrpoLossConfig()
    torch_extensions_dir: str = dataclasses.field(default_factory=default_extensions_dir)
    """Where DeepSpeed's C++ extensions are built once and reused (see actors.learner_env)."""
    placement_timeout_s: float = 60.0
    """How long the group waits for Ray to place all ranks before giving up with a clear error."""
    setup_timeout_s: float = 600.0
    """Rendezvous, extension load or build, model load and deepspeed.initialize on every rank."""
    call_timeout_s: float = 600.0
    """Any later call on the ranks (a train step, a gather, a checkpoint)."""
    publisher_faults: FaultPlan = NO_FAULTS
    """Injected message faults on rank 0's weight publisher (chaos testing; none by default)."""

    def __post_init__(self) -> None:
        if self.zero_stage not in (1, 2, 3):
            raise LearnerConfigError("zero_stage", self.zero_stage, "1, 2 or 3")
        if self.dtype not in ("float32", "bfloat16"):
            raise LearnerConfigError("dtype", self.dtype, "'float32' or 'bfloat16'")
        _check(self, "lr", self.lr > 0 and math.isfinite(self.lr), "a finite float > 0")
        _check(self, "betas", len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "two floats in [0, 1)")
        _check(self, "eps", self.eps > 0, "a float > 0")
        _check(self, "weight_decay", 0 <= self.weight_decay < math.inf, "a finite float >= 0")
        _check(self, "grad_clip", self.grad_clip > 0, "a float > 0 (math.inf for no clipping)")
        for name in ("micro_batch_size", "num_ranks"):
            value = getattr(self, name)
            _check(self, name, isinstance(value, int) and value >= 1, "an int >= 1")
        _check(self, "cpus_per_rank", self.cpus_per_rank > 0 and math.isfinite(self.cpus_per_rank), "a float > 0")
        for name in ("placement_timeout_s", "setup_timeout_s", "call_timeout_s"):
            _check(self, name, getattr(self, name) > 0, "a float > 0")

    @property
    def num_threads(self) -> int:
        """torch intra-op threads per rank: its whole CPUs, at least one."""
        return max(1, int(self.cpus_per_rank))

    @property
    def uses_reference_model(self) -> bool:
        """Whether ranks load a frozen reference policy for the KL penalty."""
        return self.loss.policy_loss.kl_coef > 0


def _check(config: LearnerConfig, name: str, ok: bool, expected: str) -> None:
    if not ok:
        raise LearnerConfigError(name, getattr(config, name), expected)
