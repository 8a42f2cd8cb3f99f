"""The loss every drafter trains on: KL from the policy's next-token distribution to its own.

Forward KL(p || q) at temperature 1 is the standard distillation target for speculative
decoding: at temperature 1 a draft token is accepted with probability sum_v min(p_v, q_v) =
1 - TV(p, q), and Pinsker bounds TV by sqrt(KL / 2), so pushing KL down pushes acceptance up;
the same loss keeps argmaxes aligned for greedy decoding.

Shape legend: N selected positions, V vocab.
"""

from __future__ import annotations

import torch


def imitation_kl(teacher_logprobs_NV: torch.Tensor, student_logits_NV: torch.Tensor) -> torch.Tensor:
    """Mean over positions of KL(teacher || softmax(student_logits))."""
    student_logprobs_NV = torch.log_softmax(student_logits_NV.float(), dim=-1)
    teacher_probs_NV = teacher_logprobs_NV.exp()
    return (teacher_probs_NV * (teacher_logprobs_NV - student_logprobs_NV)).sum(dim=-1).mean()
