"""The clipped, importance-corrected policy-gradient loss over ragged token sequences.

Shape legend: B sequences, T padded response length, V vocabulary.

What is applied, per response token t with advantage A (the sequence's, broadcast):

- Behaviour-only (no proximal log-probs): r = pi_new / mu, mu being the rollout engine's
  behaviour policy, possibly several versions old. The objective is PPO's
  min(r A, clip(r, 1 - eps_low, 1 + eps_high) A); for A < 0 the ratio is additionally
  truncated at `tis_cap` (dual clip), the one direction in which PPO alone leaves r, and so
  the gradient, unbounded when mu is stale.
- Decoupled (proximal log-probs given, AReaL-style): r = pi_new / pi_prox, clipped as above
  around the learner's own weights at the start of the step, times the detached importance
  weight w = min(pi_prox / mu, tis_cap) (truncated IS as in TIS) that corrects the gap
  between the engine's policy and the learner's. Unclipped, w r = pi_new / mu as above.

Aggregation is the token-level mean: sum over every unmasked token of the batch divided by
the number of those tokens (DAPO). Each token weighs the same whatever its sequence's
length, so long responses are not down-weighted the way a per-sequence mean would. Pass
`num_tokens` to divide by a count shared across micro-batches, or by a constant (Dr. GRPO's
G * max_len), so the gradient does not depend on how the batch was split.
"""

import torch

from rollspec.rl.config import PolicyLossConfig
from rollspec.rl.kl import MAX_LOG_RATIO, k3_kl


class PolicyLossInputError(ValueError):
    """Inputs of mismatched shapes, or a KL penalty without reference log-probs."""


def masked_mean(values_BT: torch.Tensor, mask_BT: torch.Tensor) -> torch.Tensor:
    """Mean of `values_BT` over positions where `mask_BT` is 1; 0 if nothing is unmasked."""
    return (values_BT * mask_BT).sum() / mask_BT.sum().clamp(min=1)


def entropy_from_logits(logits_BTV: torch.Tensor) -> torch.Tensor:
    """Per-position entropy [B, T] of softmax(logits), in nats, computed in float32."""
    logp_BTV = torch.log_softmax(logits_BTV.float(), dim=-1)
    return -(logp_BTV.exp() * logp_BTV).sum(dim=-1)


def _check_inputs(
    logprobs_BT: torch.Tensor, others: dict[str, torch.Tensor | None], advantages: torch.Tensor
) -> None:
    for name, tensor in others.items():
        if tensor is not None and tensor.shape != logprobs_BT.shape:
            raise PolicyLossInputError(f"{name} has shape {tuple(tensor.shape)}, logprobs {tuple(logprobs_BT.shape)}")
    if logprobs_BT.dim() != 2:
        raise PolicyLossInputError(f"logprobs must be [B, T], got shape {tuple(logprobs_BT.shape)}")
    if advantages.shape not in (logprobs_BT.shape[:1], logprobs_BT.shape):
        raise PolicyLossInputError(f"advantages must be [B] or [B, T], got {tuple(advantages.shape)}")


def policy_loss(
    logprobs_BT: torch.Tensor,
    behaviour_logprobs_BT: torch.Tensor,
    advantages: torch.Tensor,
    mask_BT: torch.Tensor,
    config: PolicyLossConfig,
    *,
    proximal_logprobs_BT: torch.Tensor | None = None,
    ref_logprobs_BT: torch.Tensor | None = None,
    logits_BTV: torch.Tensor | None = None,
    num_tokens: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Scalar loss to minimise, plus detached 0-d stats (no host sync; `.item()` them once).

    `logprobs_BT` are the current policy's log-probs of the sampled tokens (with grad);
    `behaviour_logprobs_BT` the engine's, `proximal_logprobs_BT` the learner's at the start
    of the step and `ref_logprobs_BT` the reference policy's, all treated as constants.
    `advantages` is [B] (one per sequence) or [B, T]; `mask_BT` is 1 on response tokens,
    0 on padding. `logits_BTV`, if given, only feeds the entropy stat. See the module
    docstring for the exact objective.
    """
    _check_inputs(
        logprobs_BT,
        {"behaviour_logprobs": behaviour_logprobs_BT, "mask": mask_BT, "proximal_logprobs": proximal_logprobs_BT,
         "ref_logprobs": ref_logprobs_BT},
        advantages,
    )
    if config.kl_coef > 0 and ref_logprobs_BT is None:
        raise PolicyLossInputError(f"kl_coef={config.kl_coef} needs ref_logprobs_BT")
    if num_tokens is not None and not num_tokens > 0:
        raise PolicyLossInputError(f"num_tokens must be > 0, got {num_tokens!r}")
    mask = mask_BT.to(logprobs_BT.dtype)
    adv_BT = (advantages[:, None] if advantages.dim() == 1 else advantages).to(logprobs_BT.dtype).expand_as(logprobs_BT)
    behaviour_BT = behaviour_logprobs_BT.detach()

    if proximal_logprobs_BT is None:
        anchor_BT = behaviour_BT
        raw_weight_BT = torch.ones_like(logprobs_BT)
    else:
        anchor_BT = proximal_logprobs_BT.detach()
        raw_weight_BT = (anchor_BT - behaviour_BT).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO).exp()
    weight_BT = raw_weight_BT.clamp(max=config.tis_cap)
    ratio_BT = (logprobs_BT - anchor_BT).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO).exp()
    clipped_BT = ratio_BT.clamp(1 - config.clip_eps_low, 1 + config.clip_eps_high)
    objective_BT = torch.minimum(ratio_BT * adv_BT, clipped_BT * adv_BT)
    if proximal_logprobs_BT is None:
        objective_BT = torch.where(adv_BT < 0, torch.maximum(objective_BT, config.tis_cap * adv_BT), objective_BT)

    denominator = mask.sum().clamp(min=1) if num_tokens is None else num_tokens
    pg_loss = -(weight_BT * objective_BT * mask).sum() / denominator
    loss = pg_loss
    kl_BT = None
    if ref_logprobs_BT is not None:
        kl_BT = k3_kl(logprobs_BT, ref_logprobs_BT.detach())
        if config.kl_coef > 0:
            loss = loss + config.kl_coef * (kl_BT * mask).sum() / denominator

    with torch.no_grad():
        clipped = ((adv_BT > 0) & (ratio_BT > 1 + config.clip_eps_high)) | (
            (adv_BT < 0) & (ratio_BT < 1 - config.clip_eps_low)
        )
        if proximal_logprobs_BT is None:
            truncated = (adv_BT < 0) & (ratio_BT > config.tis_cap)
        else:
            truncated = raw_weight_BT > config.tis_cap
        stats = {
            "loss": loss.detach(),
            "pg_loss": pg_loss.detach(),
            "num_tokens": mask.sum(),
            "clip_fraction": masked_mean(clipped.to(mask.dtype), mask),
            "truncated_fraction": masked_mean(truncated.to(mask.dtype), mask),
            "ratio_mean": masked_mean(ratio_BT.detach(), mask),
            "is_weight_mean": masked_mean(weight_BT, mask),
            # KL(mu || pi_new) on mu's own samples: how far the policy has moved from the
            # engine that generated the batch (staleness plus engine/learner numerics).
            "behaviour_kl": masked_mean(k3_kl(behaviour_BT, logprobs_BT.detach()), mask),
        }
        if kl_BT is not None:
            stats["kl"] = masked_mean(kl_BT.detach(), mask)
        if logits_BTV is not None:
            stats["entropy"] = masked_mean(entropy_from_logits(logits_BTV), mask)
    return loss, stats
