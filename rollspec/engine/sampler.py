"""Logits -> the exact probability vector a token is sampled from. The drafter and the verifier
both go through `processed_probs`, which is what makes the rejection rule lossless.

Shape legend: B rows, T positions per row, V vocab.
"""

from __future__ import annotations

import dataclasses

import torch

from rollspec.engine import cpu_kernels
from rollspec.engine.sampling_params import SamplingParams

_F32 = torch.float32


@dataclasses.dataclass(frozen=True, slots=True)
class SamplingTensors:
    """Per-row sampling parameters as device tensors, plus flags to skip unused work."""

    temperature_B: torch.Tensor
    top_p_B: torch.Tensor
    top_k_B: torch.Tensor
    is_greedy_B: torch.Tensor
    all_greedy: bool
    any_greedy: bool
    any_truncation: bool
    unit_temperature: bool  # every sampled row has temperature 1: no division

    @classmethod
    def from_params(cls, params: list[SamplingParams], device: torch.device) -> SamplingTensors:
        greedy = [p.is_greedy for p in params]
        return cls(
            temperature_B=torch.tensor([1.0 if g else p.temperature for p, g in zip(params, greedy)], device=device),
            top_p_B=torch.tensor([p.top_p for p in params], device=device),
            top_k_B=torch.tensor([p.top_k for p in params], device=device, dtype=torch.long),
            is_greedy_B=torch.tensor(greedy, device=device),
            all_greedy=all(greedy),
            any_greedy=any(greedy),
            any_truncation=any(p.top_p < 1.0 or p.top_k > 0 for p in params if not p.is_greedy),
            unit_temperature=all(p.temperature == 1.0 for p in params if not p.is_greedy),
        )

    def select(self, rows: slice) -> SamplingTensors:
        return dataclasses.replace(self, temperature_B=self.temperature_B[rows], top_p_B=self.top_p_B[rows],
                                   top_k_B=self.top_k_B[rows], is_greedy_B=self.is_greedy_B[rows])


def processed_probs(logits_BTV: torch.Tensor, st: SamplingTensors) -> torch.Tensor:
    """Temperature, then top-k, then top-p (smallest set of top tokens reaching top_p), then
    softmax; greedy rows get a one-hot at the argmax. Float32 whatever the logits dtype."""
    if logits_BTV.dtype != torch.float32:  # .float() on float32 still dispatches an op
        logits_BTV = logits_BTV.float()
    if st.all_greedy:
        return _one_hot_argmax(logits_BTV)
    scaled_BTV = logits_BTV if st.unit_temperature else logits_BTV / st.temperature_B[:, None, None]
    if st.any_truncation:
        scaled_BTV = _truncate(scaled_BTV, st)
    probs_BTV = scaled_BTV.softmax(dim=-1)
    if not st.any_greedy:
        return probs_BTV
    greedy_B11 = st.is_greedy_B[:, None, None]
    return torch.where(greedy_B11, _one_hot_argmax(logits_BTV), probs_BTV)


def _one_hot_argmax(logits_BTV: torch.Tensor) -> torch.Tensor:
    probs_BTV = torch.zeros_like(logits_BTV)
    return probs_BTV.scatter_(-1, logits_BTV.argmax(dim=-1, keepdim=True), 1.0)


def _truncate(scaled_BTV: torch.Tensor, st: SamplingTensors) -> torch.Tensor:
    sorted_BTV, order_BTV = scaled_BTV.sort(dim=-1, descending=True)
    vocab = scaled_BTV.shape[-1]
    k_B = torch.where(st.top_k_B > 0, st.top_k_B.clamp(max=vocab), vocab)
    kth_BT1 = sorted_BTV.gather(-1, (k_B - 1)[:, None, None].expand(*sorted_BTV.shape[:2], 1))
    sorted_BTV = sorted_BTV.masked_fill(sorted_BTV < kth_BT1, float("-inf"))
    sorted_probs_BTV = sorted_BTV.softmax(dim=-1)
    mass_before_BTV = sorted_probs_BTV.cumsum(dim=-1) - sorted_probs_BTV
    # The top token always survives (mass before it is 0 < top_p).
    drop_sorted_BTV = (mass_before_BTV >= st.top_p_B[:, None, None]) | torch.isinf(sorted_BTV)
    drop_BTV = torch.zeros_like(drop_sorted_BTV).scatter_(-1, order_BTV, drop_sorted_BTV)
    return scaled_BTV.masked_fill(drop_BTV, float("-inf"))


def sample_from(probs_BTV: torch.Tensor, uniforms_BT: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sampling: one uniform per draw keeps randomness cheap and reproducible. fp32 on
    CPU goes through one C call (kernels/sampling.c) with exactly `sample_from_torch`'s result."""
    if cpu_kernels.active and _kernel_fits(probs_BTV, uniforms_BT):
        B, T, V = probs_BTV.shape
        tokens_BT, cdf_V = torch.empty(B, T, dtype=torch.long), torch.empty(V, dtype=_F32)  # held through the call
        cpu_kernels.library().sample_rows(  # type: ignore[union-attr]
            B * T, T, V, probs_BTV.data_ptr(), V, uniforms_BT.data_ptr(), uniforms_BT.stride(0), uniforms_BT.stride(1),
            tokens_BT.data_ptr(), cdf_V.data_ptr())
        return tokens_BT
    return sample_from_torch(probs_BTV, uniforms_BT)


def _kernel_fits(probs_BTV: torch.Tensor, uniforms_BT: torch.Tensor) -> bool:
    return (probs_BTV.dtype is _F32 and uniforms_BT.dtype is _F32 and probs_BTV.is_cpu and uniforms_BT.is_cpu
            and probs_BTV.ndim == 3 and probs_BTV.is_contiguous() and probs_BTV.shape[-1] > 0
            and uniforms_BT.shape == probs_BTV.shape[:2])


def sample_from_torch(probs_BTV: torch.Tensor, uniforms_BT: torch.Tensor) -> torch.Tensor:
    """`sample_from` in torch ops: the reference for the kernel, and the path off fp32 CPU."""
    cdf_BTV = probs_BTV.cumsum(dim=-1)
    total_BT1 = cdf_BTV[..., -1:]
    # Round-off can put u*total at the very end of the CDF, past every token: keep it just below
    # the total, so the draw lands on the first token whose CDF reaches it, which has probability
    # (never on a zero-probability one: those do not raise the CDF).
    below_BT1 = torch.nextafter(total_BT1, -total_BT1)  # toward 0 for any total > 0 (a 0 total stays 0)
    targets_BT1 = torch.minimum(uniforms_BT[..., None] * total_BT1, below_BT1)
    return torch.searchsorted(cdf_BTV, targets_BT1, right=True)[..., 0]


def token_logprobs(logits_BTV: torch.Tensor, probs_BTV: torch.Tensor, tokens_BT: torch.Tensor,
                   st: SamplingTensors) -> torch.Tensor:
    """The policy's logprob of each emitted token under the processed distribution it was
    sampled from; greedy rows (one-hot distribution) report the untempered log-softmax instead."""
    picked_BT = probs_BTV.gather(-1, tokens_BT[..., None])[..., 0].log()
    if not st.any_greedy:
        return picked_BT
    raw_BT = logits_BTV.float().log_softmax(dim=-1).gather(-1, tokens_BT[..., None])[..., 0]
    return torch.where(st.is_greedy_B[:, None], raw_BT, picked_BT)
