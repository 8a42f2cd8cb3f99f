"""The lossless acceptance rule, one pure function over tensors.

Shape legend: B rows, K drafted tokens per row, Q = K + 1 target positions, V vocab.
"""

from __future__ import annotations

from typing import Protocol

import torch

from rollspec.engine.sampler import sample_from


class Verifier(Protocol):
    def __call__(self, p_probs_BQV: torch.Tensor, q_probs_BKV: torch.Tensor | None, draft_BK: torch.Tensor,
                 uniforms_BQ: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


def verify(p_probs_BQV: torch.Tensor, q_probs_BKV: torch.Tensor | None, draft_BK: torch.Tensor,
           uniforms_BQ: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Speculative sampling (Leviathan et al. 2023; Chen et al. 2023).

    Draft token j is accepted with probability min(1, p_j(d_j) / q_j(d_j)); the first rejection
    at position n samples from normalize(max(p_n - q_n, 0)); if all K are accepted the bonus
    token is sampled from p_K. q_probs None means a deterministic drafter (q one-hot at d_j).
    Returns (num_accepted_B in 0..K, next_token_B); row b emits draft_BK[b, :n] then next_token.
    Every emitted sequence is distributed exactly as sampling from p one token at a time.
    """
    B, K = draft_BK.shape
    rows_B = torch.arange(B, device=draft_BK.device)
    p_draft_BK = p_probs_BQV[:, :K].gather(-1, draft_BK[..., None])[..., 0]
    if q_probs_BKV is None:
        q_draft_BK = torch.ones_like(p_draft_BK)
    else:
        q_draft_BK = q_probs_BKV.gather(-1, draft_BK[..., None])[..., 0]
    # u < p/q written without the division: q(d) > 0 because d was drawn from q.
    accepted_BK = uniforms_BQ[:, :K] * q_draft_BK < p_draft_BK
    num_accepted_B = accepted_BK.int().cumprod(dim=-1).sum(dim=-1)
    p_next_BV = p_probs_BQV[rows_B, num_accepted_B]
    rejected_B = num_accepted_B < K
    at_B = num_accepted_B.clamp(max=K - 1)
    if q_probs_BKV is None:
        q_next_BV = torch.zeros_like(p_next_BV).scatter_(-1, draft_BK[rows_B, at_B][:, None], 1.0)
    else:
        q_next_BV = q_probs_BKV[rows_B, at_B]
    residual_BV = (p_next_BV - q_next_BV).clamp_(min=0)
    # A rejection implies p != q, so the residual has mass; guard only against round-off.
    usable_B = rejected_B & (residual_BV.sum(dim=-1) > 0)
    next_dist_BV = torch.where(usable_B[:, None], residual_BV, p_next_BV)
    next_token_B = sample_from(next_dist_BV[:, None], uniforms_BQ[:, K:])[:, 0]
    return num_accepted_B, next_token_B
