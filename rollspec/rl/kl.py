"""The k3 estimator of KL divergence between two policies, per sampled token."""

import torch

MAX_LOG_RATIO = 20.0  # exp(20) ~ 5e8: far past any meaningful ratio, still finite in fp16/fp32


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || pi_ref) from tokens sampled from pi (Schulman, 2020).

    With d = ref_logprobs - logprobs: exp(d) - d - 1. Unbiased, always >= 0, exactly 0 where
    the two log-probabilities agree. d is clamped to +-MAX_LOG_RATIO so one token on which
    the policies disagree wildly cannot make the loss infinite.
    """
    log_ratio = (ref_logprobs - logprobs).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    return torch.expm1(log_ratio) - log_ratio
