"""A drafter's k draws: each turns the drafter's final hidden states into the next draft token
and the processed distribution q it was drawn from (LM head, `processed_probs`, `sample_from`),
written straight into the proposal's [B, K] tokens and [B, K, V] q.

For fp32 on CPU without top-k / top-p that is one C call per draw (kernels/sampling.c,
head_sample) instead of ~12 torch ops; q is then the kernel's softmax, which may differ from
torch's in the last bit. That keeps verification lossless: the rule needs q to be exactly the
distribution the draft was drawn from (it is), and computes the policy's p on its own.

Shape legend: B rows, K drafted tokens, V vocab, D hidden.
"""

from __future__ import annotations

import torch
from torch import nn

from rollspec.engine import cpu_kernels
from rollspec.engine.cached_forward import proj_weight_of, project
from rollspec.engine.sampler import SamplingTensors, processed_probs, sample_from

# The kernel's softmax calls scalar expf per token: on large vocabularies torch's vectorized one wins.
MAX_KERNEL_VOCAB = 8192


class DraftDraws:
    """Collects k draws for B rows; `tokens_BK` and `q_BKV` are the proposal once all k are made."""

    def __init__(self, lm_head: nn.Linear, sampling: SamplingTensors, uniforms_BK: torch.Tensor) -> None:
        B, K = uniforms_BK.shape
        V = lm_head.weight.shape[0]
        self.lm_head, self.sampling, self.uniforms_BK = lm_head, sampling, uniforms_BK
        self.tokens_BK = torch.empty(B, K, dtype=torch.long, device=uniforms_BK.device)
        self.q_BKV = torch.empty(B, K, V, dtype=torch.float32, device=uniforms_BK.device)
        weight = lm_head.weight
        self.lm_packed: torch.Tensor | None = None  # the LM head packed for the kernel, when it applies
        if (cpu_kernels.active and not sampling.any_truncation and V <= MAX_KERNEL_VOCAB and weight.is_cpu
                and weight.dtype is torch.float32 and uniforms_BK.dtype is torch.float32
                and sampling.temperature_B.dtype is torch.float32):
            self.lm_packed = proj_weight_of(lm_head).packed
            self.scratch = torch.empty(B * V + V, dtype=torch.float32)

    @property
    def kernel_ready(self) -> bool:
        """True when draws (and kernels built on them, drafters/eagle_chain.py) run in C."""
        return self.lm_packed is not None and self.uniforms_BK.stride(1) == 1

    def draw(self, j: int, hidden_B1D: torch.Tensor) -> torch.Tensor:
        """Draft token j of every row from the drafter's hidden states [B, 1, D]; returns [B, 1]."""
        hidden_BD = hidden_B1D.reshape(hidden_B1D.shape[0], -1)
        if self.lm_packed is not None and hidden_BD.dtype is torch.float32 and hidden_BD.stride(1) == 1:
            B, D = hidden_BD.shape
            V, K = self.q_BKV.shape[2], self.tokens_BK.shape[1]
            st, u = self.sampling, self.uniforms_BK
            cpu_kernels.library().head_sample(  # type: ignore[union-attr]
                B, D, V, hidden_BD.data_ptr(), hidden_BD.stride(0), self.lm_packed.data_ptr(),
                st.temperature_B.data_ptr(), st.is_greedy_B.data_ptr(), int(st.unit_temperature),
                u.data_ptr() + 4 * j * u.stride(1), u.stride(0), self.tokens_BK.data_ptr() + 8 * j, K,
                self.q_BKV.data_ptr() + 4 * j * V, K * V, self.scratch.data_ptr())
        else:
            q_B1V = processed_probs(project(hidden_B1D, self.lm_head), self.sampling)
            self.q_BKV[:, j: j + 1] = q_B1V
            self.tokens_BK[:, j: j + 1] = sample_from(q_B1V, self.uniforms_BK[:, j: j + 1])
        return self.tokens_BK[:, j: j + 1]
