"""Group-relative advantages (GRPO / Dr. GRPO) from the rewards of each prompt group."""

import torch

from rollspec.rl.config import AdvantageConfig

DEFAULT_ADVANTAGE_CONFIG = AdvantageConfig()


class AdvantageInputError(ValueError):
    """Rewards or group ids of the wrong shape, or rewards that are not finite."""


def group_advantages(
    rewards: torch.Tensor,
    group_ids: torch.Tensor | None = None,
    config: AdvantageConfig = DEFAULT_ADVANTAGE_CONFIG,
) -> torch.Tensor:
    """Advantage of each completion relative to the other completions of its prompt.

    `rewards` is either [num_groups, G] (one row per prompt) or [N] with `group_ids` [N]
    naming each completion's prompt (ragged groups, e.g. after drops). Returns a tensor of
    the same shape: (r - mean) / (std + eps) with the population std, or r - mean when
    `config.scale_by_std` is False. Invariants: each group's advantages sum to ~0, and a group
    whose rewards are all equal (including a group of one) gets exactly 0, not the rounding
    noise of (r - mean) divided by eps.
    """
    if group_ids is None:
        if rewards.dim() != 2 or rewards.numel() == 0:
            raise AdvantageInputError(f"rewards without group_ids must be [num_groups, G], got shape {tuple(rewards.shape)}")
        num_groups, group_size = rewards.shape
        inverse = torch.arange(num_groups, device=rewards.device).repeat_interleave(group_size)
    else:
        if rewards.dim() != 1 or group_ids.shape != rewards.shape or rewards.numel() == 0:
            raise AdvantageInputError(
                f"rewards with group_ids must both be [N], got {tuple(rewards.shape)} and {tuple(group_ids.shape)}"
            )
        _, inverse = torch.unique(group_ids, return_inverse=True)
        num_groups = int(inverse.max()) + 1
    # float64: a 0/1 reward group of size 64 has std down to 0.12, and float32 means of
    # non-dyadic rewards drift enough to matter once divided.
    values = rewards.reshape(-1).to(torch.float64)
    if not torch.isfinite(values).all():
        bad = torch.nonzero(~torch.isfinite(values)).flatten().tolist()
        raise AdvantageInputError(f"rewards must be finite; positions {bad[:10]} are not")

    zeros = values.new_zeros(num_groups)
    counts = zeros.index_add(0, inverse, torch.ones_like(values))
    centered = values - (zeros.index_add(0, inverse, values) / counts)[inverse]
    advantages = centered
    if config.scale_by_std:
        std = (zeros.index_add(0, inverse, centered**2) / counts).sqrt()
        advantages = centered / (std[inverse] + config.eps)
    group_max = zeros.scatter_reduce(0, inverse, values, "amax", include_self=False)
    group_min = zeros.scatter_reduce(0, inverse, values, "amin", include_self=False)
    advantages = torch.where((group_max == group_min)[inverse], 0.0, advantages)

    out_dtype = rewards.dtype if rewards.is_floating_point() else torch.float32
    return advantages.to(out_dtype).reshape(rewards.shape)
