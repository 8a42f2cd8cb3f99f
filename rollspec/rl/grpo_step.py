"""The GRPO loss of one (micro-)batch under the current policy: teacher-forced log-probs of the
sampled tokens, then the clipped, importance-corrected objective of `rl.policy_loss`.

Shape legend: B sequences, T padded sequence length, V vocabulary. Column t of a per-token tensor
is the prediction made at position t, of token t + 1 (see `rl.trajectory_batch`).

What the learner's log-probs mean: log_softmax(logits / temperature) of the sampled token. The
engine reports the log of the *processed* distribution (temperature, then top-k, then top-p; see
`engine.sampler`). RL rollouts sample with top_k 0 and top_p 1, where the two are the same
quantity, so behaviour and learner log-probs differ only by staleness and numerics. With top-k or
top-p truncation the engine's numbers are of the truncated distribution and the importance weight
below absorbs the difference (a bias the truncated-IS cap bounds, not removes).

Staleness correction (the `decoupled` option, on by default): the proximal policy of the
decoupled PPO objective (AReaL) is the learner's weights at the start of the step. The learner
takes exactly one optimizer step per batch, so those are the weights of this very forward pass
and the proximal log-probs are the current ones, detached: no extra forward. The PPO ratio
pi/pi_prox is then 1 in value (clipping never binds on the single step) and each token is
weighted by w = min(pi_prox / mu, tis_cap), mu being the engine's possibly several versions old
behaviour policy: truncated importance sampling that corrects staleness and engine/learner
mismatch. With `decoupled=False`, the ratio is taken against mu directly and clipped around it
(plus a dual clip at tis_cap for negative advantages), which discards the gradient of tokens a
stale mu made unlikely under the current policy.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
from torch import nn

from rollspec.rl.config import PolicyLossConfig, RlConfigError
from rollspec.rl.policy_loss import policy_loss
from rollspec.rl.trajectory_batch import TrajectoryBatch

LogitsFn = Callable[[torch.Tensor], torch.Tensor]
"""input_ids_BT -> logits_BTV: a `PolicyLogits` module, or DeepSpeed's engine wrapping one."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class GrpoLossConfig:
    """How the learner scores a batch: the policy-loss knobs, the sampling temperature the
    rollouts used (the learner's log-probs are of logits / temperature), whether to use the
    decoupled (proximal) objective, and whether to compute the entropy stat (a second
    log-softmax over [B, T, V])."""

    policy_loss: PolicyLossConfig = PolicyLossConfig()
    temperature: float = 1.0
    decoupled: bool = True
    compute_entropy: bool = True

    def __post_init__(self) -> None:
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)
                and self.temperature > 0):
            raise RlConfigError("temperature", self.temperature, "a finite float > 0 (greedy rollouts have no logprobs "
                                                                 "to learn from)")


class PolicyLogits(nn.Module):
    """A decoder (`engine.model.Decoder`: forward -> hidden, `.logits(hidden)`) and its LM head as
    one forward, input_ids_BT -> logits_BTV.

    Training frameworks hook the module they are given (ZeRO-3 gathers parameters in forward
    pre-hooks and starts gradient reduction from the forward's outputs), so the whole computation
    that feeds the loss must sit inside one `forward`.
    """

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, input_ids_BT: torch.Tensor) -> torch.Tensor:
        """Logits at every position (causal attention, no KV cache)."""
        hidden_BTD = self.decoder(input_ids_BT)
        lm_head: Callable[[torch.Tensor], torch.Tensor] = getattr(self.decoder, "logits")  # untyped on nn.Module
        return lm_head(hidden_BTD)


def logprobs_from_logits(logits_BTV: torch.Tensor, input_ids_BT: torch.Tensor, temperature: float) -> torch.Tensor:
    """log_softmax(logits / temperature) at position t of token t + 1, in float32; the last
    column, which predicts nothing, is 0."""
    logp_BTV = torch.log_softmax(logits_BTV[:, :-1].float() / temperature, dim=-1)
    picked_BT = logp_BTV.gather(-1, input_ids_BT[:, 1:, None])[..., 0]
    return torch.nn.functional.pad(picked_BT, (0, 1))


def token_logprobs(model: LogitsFn, batch: TrajectoryBatch, temperature: float = 1.0) -> torch.Tensor:
    """The model's log-probs [B, T] of the batch's tokens, aligned with `batch.response_mask_BT`
    (with grad if the model has it)."""
    return logprobs_from_logits(model(batch.input_ids_BT), batch.input_ids_BT, temperature)


def grpo_loss(model: LogitsFn, batch: TrajectoryBatch, config: GrpoLossConfig,
              ref_model: LogitsFn | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Scalar loss to minimise for `batch` (the token sum divided by `batch.loss_normalizer`)
    plus detached 0-d stats from `policy_loss` (no host sync).

    `ref_model`, if given, supplies reference log-probs for the KL stat and, with
    `policy_loss.kl_coef > 0`, the KL penalty; it runs without grad. See the module docstring for
    the staleness correction.
    """
    logits_BTV = model(batch.input_ids_BT)
    logprobs_BT = logprobs_from_logits(logits_BTV, batch.input_ids_BT, config.temperature)
    ref_logprobs_BT = None
    if ref_model is not None:
        with torch.no_grad():
            ref_logprobs_BT = logprobs_from_logits(ref_model(batch.input_ids_BT), batch.input_ids_BT,
                                                   config.temperature)
    entropy_logits_BTV = None
    if config.compute_entropy:
        # Shifted so column t is the distribution that produced token t + 1, like the mask.
        entropy_logits_BTV = torch.nn.functional.pad(logits_BTV[:, :-1].detach() / config.temperature, (0, 0, 0, 1))
    return policy_loss(
        logprobs_BT,
        batch.behaviour_logprobs_BT,
        batch.advantages_B,
        batch.response_mask_BT,
        config.policy_loss,
        proximal_logprobs_BT=logprobs_BT.detach() if config.decoupled else None,
        ref_logprobs_BT=ref_logprobs_BT,
        logits_BTV=entropy_logits_BTV,
        num_tokens=batch.loss_normalizer,
    )
