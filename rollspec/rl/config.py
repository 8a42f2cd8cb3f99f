"""Frozen configs of the rl/ cores, built by launch/ from its validated pydantic models."""

import math
from collections.abc import Mapping
from dataclasses import dataclass

from rollspec.rl.split import DEFAULT_EVAL_FRACTION, DEFAULT_RL_FRACTION
from rollspec.rl.tasks import DEFAULT_DIFFICULTY


class RlConfigError(ValueError):
    """A config field outside its allowed range."""

    def __init__(self, name: str, value: object, expected: str):
        super().__init__(f"{name} must be {expected}, got {value!r}")
        self.name, self.value, self.expected = name, value, expected


@dataclass(frozen=True, slots=True, kw_only=True)
class AdvantageConfig:
    """How rewards within a prompt group become advantages.

    scale_by_std=True is GRPO, (r - mean) / (std + eps); False is Dr. GRPO, r - mean, which
    avoids up-weighting groups whose rewards barely differ. Either way a group whose
    rewards are all equal gets exactly zero advantage.
    """

    scale_by_std: bool = True
    eps: float = 1e-6

    def __post_init__(self) -> None:
        if not (isinstance(self.eps, (int, float)) and self.eps > 0 and math.isfinite(self.eps)):
            raise RlConfigError("eps", self.eps, "a finite float > 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyLossConfig:
    """Knobs of the clipped, importance-corrected policy loss (see `rl.policy_loss`).

    Defaults: DAPO's asymmetric clip (0.2 low, 0.28 high), importance weights against the
    behaviour policy truncated at 2 as in TIS (Yao et al., 2025), no KL penalty.
    """

    clip_eps_low: float = 0.2
    clip_eps_high: float = 0.28
    tis_cap: float = 2.0
    kl_coef: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.clip_eps_low < 1:
            raise RlConfigError("clip_eps_low", self.clip_eps_low, "in [0, 1)")
        if not 0 <= self.clip_eps_high < math.inf:
            raise RlConfigError("clip_eps_high", self.clip_eps_high, "a finite float >= 0")
        # Below 1 + clip_eps_high the cap would bind before the clip for positive advantages.
        if not 1 + self.clip_eps_high <= self.tis_cap:
            raise RlConfigError("tis_cap", self.tis_cap, f">= 1 + clip_eps_high = {1 + self.clip_eps_high}")
        if not 0 <= self.kl_coef < math.inf:
            raise RlConfigError("kl_coef", self.kl_coef, "a finite float >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class MixtureConfig:
    """Arguments of `TaskMixture` (validated there): task weights, seed, difficulty, split fractions."""

    weights: Mapping[str, float]
    seed: int
    difficulty: int | Mapping[str, int] = DEFAULT_DIFFICULTY
    eval_fraction: float = DEFAULT_EVAL_FRACTION
    rl_fraction: float = DEFAULT_RL_FRACTION
