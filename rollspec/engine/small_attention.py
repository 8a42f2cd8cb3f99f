"""Attention of the cached forward's new tokens over the KV cache through the C kernel
(kernels/attention.c, loaded by `cpu_kernels`) for fp32 on CPU, torch's SDPA otherwise.

Why: SDPA's CPU flash kernel costs ~30 us a call at batch 1 and ~270 us at batch 16 with ragged
rows for a few MFLOP of work, 10-30% of a decode step at the zoo's size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rollspec.engine import cpu_kernels
from rollspec.engine.kv_cache import AttentionBatch


def attend(q_BHTE: torch.Tensor, keys_BGLE: torch.Tensor, values_BGLE: torch.Tensor,
           batch: AttentionBatch) -> torch.Tensor:
    """softmax(q k^T / sqrt(E) + mask) v as [B, T, H, E] (contiguous), the mask being batch's rule
    (token (b, t) sees keys up to positions_BT[b, t]); equal to SDPA's output transposed."""
    B, H, T, E = q_BHTE.shape
    G = keys_BGLE.shape[1]
    if not _fits(q_BHTE, keys_BGLE, values_BGLE, batch):
        out_BHTE = F.scaled_dot_product_attention(q_BHTE, keys_BGLE, values_BGLE, attn_mask=batch.mask_B1TL,
                                                  enable_gqa=G != H)
        return out_BHTE.transpose(1, 2)
    out_BTHE = torch.empty(B, T, H, E, dtype=torch.float32)
    positions_BT = batch.positions_BT if batch.masked else None
    q_s, k_s, v_s, o_s = q_BHTE.stride(), keys_BGLE.stride(), values_BGLE.stride(), out_BTHE.stride()
    status = cpu_kernels.library().small_attention(  # type: ignore[union-attr]
        B, T, H, G, E, batch.kv_len, 1.0 / math.sqrt(E),
        q_BHTE.data_ptr(), q_s[0], q_s[1], q_s[2],
        keys_BGLE.data_ptr(), k_s[0], k_s[1], k_s[2],
        values_BGLE.data_ptr(), v_s[0], v_s[1], v_s[2],
        None if positions_BT is None else positions_BT.data_ptr(),
        0 if positions_BT is None else positions_BT.stride(0), 0 if positions_BT is None else positions_BT.stride(1),
        out_BTHE.data_ptr(), o_s[0], o_s[1], o_s[2])
    if status != 0:
        raise MemoryError(f"attention kernel: no memory for {batch.kv_len} scores")
    return out_BTHE


def heads_fit(H: int, G: int, E: int) -> bool:
    """The attention kernel's shape limits: head dim a multiple of 16 up to 256 (held in AVX-512
    registers), query heads a multiple of the kv heads."""
    return E % 16 == 0 and E <= 256 and H % G == 0


def _fits(q_BHTE: torch.Tensor, keys_BGLE: torch.Tensor, values_BGLE: torch.Tensor, batch: AttentionBatch) -> bool:
    H, E, G = q_BHTE.shape[1], q_BHTE.shape[3], keys_BGLE.shape[1]
    positions_BT = batch.positions_BT
    return (cpu_kernels.enabled() and q_BHTE.dtype is torch.float32 and q_BHTE.is_cpu and not q_BHTE.requires_grad
            and keys_BGLE.dtype == values_BGLE.dtype == torch.float32 and heads_fit(H, G, E)
            and q_BHTE.stride(3) == keys_BGLE.stride(3) == values_BGLE.stride(3) == 1
            and keys_BGLE.shape[2] == batch.kv_len and positions_BT.dtype == torch.int64
            and positions_BT.is_cpu)
