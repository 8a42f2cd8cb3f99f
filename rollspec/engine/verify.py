"""The lossless acceptance rule, one pure function over tensors.

Shape legend: B rows, K drafted tokens per row, Q = K + 1 target positions, V vocab.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

from rollspec.engine import cpu_kernels
from rollspec.engine.sampler import sample_from

_F32 = torch.float32


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
    fp32 on CPU runs as one C call (kernels/sampling.c) with exactly `verify_torch`'s result.
    """
    if cpu_kernels.active and _kernel_fits(p_probs_BQV, q_probs_BKV, draft_BK, uniforms_BQ):
        B, K = draft_BK.shape
        V = p_probs_BQV.shape[-1]
        num_accepted_B, next_token_B = torch.empty(B, dtype=torch.long), torch.empty(B, dtype=torch.long)
        scratch = torch.empty(2 * V, dtype=_F32)  # held through the call
        cpu_kernels.library().verify_rows(  # type: ignore[union-attr]
            B, K, V, p_probs_BQV.data_ptr(), None if q_probs_BKV is None else q_probs_BKV.data_ptr(),
            draft_BK.data_ptr(), uniforms_BQ.data_ptr(), num_accepted_B.data_ptr(), next_token_B.data_ptr(),
            scratch.data_ptr())
        return num_accepted_B, next_token_B
    return verify_torch(p_probs_BQV, q_probs_BKV, draft_BK, uniforms_BQ)


def _kernel_fits(p_probs_BQV: torch.Tensor, q_probs_BKV: torch.Tensor | None, draft_BK: torch.Tensor,
                 uniforms_BQ: torch.Tensor) -> bool:
    B, K = draft_BK.shape
    V = p_probs_BQV.shape[-1]
    tensors = (p_probs_BQV, draft_BK, uniforms_BQ) + (() if q_probs_BKV is None else (q_probs_BKV,))
    return (K > 0 and V > 0 and all(t.is_cpu and t.is_contiguous() for t in tensors)
            and p_probs_BQV.dtype is _F32 and uniforms_BQ.dtype is _F32 and draft_BK.dtype is torch.long
            and p_probs_BQV.shape == (B, K + 1, V) and uniforms_BQ.shape == (B, K + 1)
            and (q_probs_BKV is None or (q_probs_BKV.dtype is _F32 and q_probs_BKV.shape == (B, K, V))))


def verify_torch(p_probs_BQV: torch.Tensor, q_probs_BKV: torch.Tensor | None, draft_BK: torch.Tensor,
                 uniforms_BQ: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`verify` in torch ops: the reference for the kernel, and the path off fp32 CPU."""
    B, K = draft_BK.shape
    V = p_probs_BQV.shape[-1]
    draft_BK1 = draft_BK[..., None]
    p_draft_BK = p_probs_BQV.narrow(1, 0, K).gather(-1, draft_BK1)[..., 0]
    if q_probs_BKV is None:
        accepted_BK = uniforms_BQ.narrow(1, 0, K) < p_draft_BK
    else:
        # u < p/q written without the division: q(d) > 0 because d was drawn from q.
        accepted_BK = uniforms_BQ.narrow(1, 0, K) * q_probs_BKV.gather(-1, draft_BK1)[..., 0] < p_draft_BK
    num_accepted_B = accepted_BK.cumprod(dim=-1).sum(dim=-1)
    at_B11 = num_accepted_B[:, None, None]
    p_next_BV = p_probs_BQV.gather(1, at_B11.expand(B, 1, V))[:, 0]
    # q at the first rejected position, and q = 0 past the last draft, where the residual
    # max(p - q, 0) is then p itself: the bonus token's distribution, with no branch.
    if q_probs_BKV is None:
        at_draft_B1 = F.pad(draft_BK, (0, 1)).gather(1, at_B11[..., 0])
        q_next_BV = torch.zeros_like(p_next_BV).scatter_(-1, at_draft_B1, (at_B11[..., 0] < K).to(p_next_BV.dtype))
    else:
        q_next_BV = F.pad(q_probs_BKV, (0, 0, 0, 1)).gather(1, at_B11.expand(B, 1, V))[:, 0]
    residual_BV = (p_next_BV - q_next_BV).clamp_(min=0)
    # A rejection implies p != q, so the residual has mass; guard only against round-off.
    next_dist_BV = torch.where(residual_BV.sum(dim=-1, keepdim=True) > 0, residual_BV, p_next_BV)
    next_token_B = sample_from(next_dist_BV[:, None], uniforms_BQ.narrow(1, K, 1))[:, 0]
    return num_accepted_B, next_token_B
