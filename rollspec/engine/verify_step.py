"""The tail of a decode, verify or admission step as one C call (kernels/verify_step.c): LM head, the policy's
processed distribution, the acceptance rule, the emitted tokens and their logprobs. It replaces
`project`, `processed_probs`, `verify`, the emitted-token cat/scatter and `token_logprobs` (~26 torch
ops; on the zoo at B = 1 a plain step 0.27 -> 0.24 ms, an EAGLE k = 4 step 0.70 -> 0.67) where it applies: fp32 on CPU, no
top-k / top-p, and the default verifier (an engine handed another verifier, such as the tests'
broken ones, keeps calling it). The logits are small_gemm's at any row count, so a row's logits, and
a greedy choice, do not depend on how many rows or positions share the step: decode and verify agree.

Shape legend: B rows, K drafted tokens, Q = K + 1 positions, V vocab, D hidden.
"""

from __future__ import annotations

import torch

from rollspec.engine import cpu_kernels
from rollspec.engine.cached_forward import proj_weight_of
from rollspec.engine.drafters.draws import MAX_KERNEL_VOCAB  # the same softmax kernel (processed_row)
from rollspec.engine.sampler import SamplingTensors

_F32 = torch.float32


def fused_tail(hidden_BQD: torch.Tensor, lm_head: torch.nn.Linear, sampling: SamplingTensors,
               draft_BK: torch.Tensor | None, q_BKV: torch.Tensor | None, uniforms_BQ: torch.Tensor,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(num_accepted [B], emitted [B, Q], logprobs [B, Q]) of the step whose final hidden states are
    hidden_BQD, or None where the kernel does not apply (the caller then runs the torch functions).
    draft_BK None: a plain decode step (Q = 1); q_BKV None with a draft: a deterministic drafter."""
    if not cpu_kernels.active or sampling.any_truncation:
        return None
    B, Q, D = hidden_BQD.shape
    K = Q - 1
    weight = proj_weight_of(lm_head)
    V = weight.t.shape[1]
    if not (weight.packed is not None and V <= MAX_KERNEL_VOCAB and hidden_BQD.dtype is _F32 and hidden_BQD.is_cpu
            and hidden_BQD.is_contiguous()
            and uniforms_BQ.dtype is _F32 and uniforms_BQ.is_contiguous() and uniforms_BQ.shape == (B, Q)
            and sampling.temperature_B.dtype is _F32 and (K == 0) == (draft_BK is None)):
        return None
    if draft_BK is not None and not (draft_BK.dtype is torch.long and draft_BK.is_contiguous()
                                     and draft_BK.shape == (B, K)):
        return None
    if q_BKV is not None and not (q_BKV.dtype is _F32 and q_BKV.is_contiguous() and q_BKV.shape == (B, K, V)):
        return None
    num_accepted_B, next_B = torch.empty(B, dtype=torch.long), torch.empty(B, dtype=torch.long)
    emitted_BQ, logprobs_BQ = torch.empty(B, Q, dtype=torch.long), torch.empty(B, Q, dtype=_F32)
    scratch = torch.empty(2 * B * Q * V + 2 * V, dtype=_F32)
    cpu_kernels.library().verify_step(  # type: ignore[union-attr]
        B, K, D, V, hidden_BQD.data_ptr(), weight.packed.data_ptr(), sampling.temperature_B.data_ptr(),
        sampling.is_greedy_B.data_ptr(), int(sampling.unit_temperature), None if q_BKV is None else q_BKV.data_ptr(),
        None if draft_BK is None else draft_BK.data_ptr(), uniforms_BQ.data_ptr(), num_accepted_B.data_ptr(),
        emitted_BQ.data_ptr(), logprobs_BQ.data_ptr(), next_B.data_ptr(), scratch.data_ptr())
    return num_accepted_B, emitted_BQ, logprobs_BQ
