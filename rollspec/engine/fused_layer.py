"""A whole decoder layer of the cached forward in one C call (kernels/layer.c) for fp32 on CPU:
the arithmetic of `cached_forward.layer_forward` without its ~40 torch ops of dispatch.

Used by layer_forward when the kernels are active and the layer has no biases; every other case
(biases, other dtypes or devices, head dims the attention kernel does not take) stays on torch.
"""

from __future__ import annotations

import torch

from rollspec.engine import cpu_kernels
from rollspec.engine.kv_cache import AttentionBatch
from rollspec.engine.small_attention import heads_fit
from rollspec.engine.small_gemm import MULTI_THREAD_MAX_ROWS


def layer_fits(w) -> bool:
    """True when the layer kernel takes this folded layer at all: packed weights, no biases, head shapes the
    attention kernel takes (also what the whole-forward and draft-chain kernels require of each layer)."""
    return (w.qkv_DC.packed is not None and w.qkv_bias is None and w.o_bias is None
            and heads_fit(w.num_heads, w.num_kv_heads, w.head_dim))


def scratch(num_tokens: int, w) -> torch.Tensor:
    """The float scratch decoder_layer needs for `num_tokens` tokens of layer `w` (layer.c's comment)."""
    H, G, E = w.num_heads, w.num_kv_heads, w.head_dim
    return torch.empty(num_tokens * ((H + 2 * G) * E + H * E + w.gate_up_DI.t.shape[1]) + E, dtype=torch.float32)


def fits(w, x_ND: torch.Tensor, cos_ME: torch.Tensor, kv_cache_SCME: torch.Tensor, batch: AttentionBatch) -> bool:
    """True when `run` can compute this layer call. cos_ME: the rotary table [positions, E] (the
    sign-folded sin table has the same layout); it must cover every cache position."""
    E = w.head_dim
    return (cpu_kernels.active and layer_fits(w)
            and x_ND.dtype is torch.float32 and x_ND.is_cpu and x_ND.is_contiguous() and not x_ND.requires_grad
            and kv_cache_SCME.dtype is torch.float32 and kv_cache_SCME.stride(-1) == 1
            and cos_ME.dtype is torch.float32 and cos_ME.stride(0) == E and cos_ME.stride(-1) == 1
            and kv_cache_SCME.shape[2] <= cos_ME.shape[0]  # positions are < the cache length
            and batch.positions_BT.dtype is torch.int64 and batch.rows_BT.dtype is torch.int64
            # one core: with several intra-op threads torch's matmuls win on many rows (prefill)
            and (x_ND.shape[0] <= MULTI_THREAD_MAX_ROWS or torch.get_num_threads() == 1))


def run(w, x_ND: torch.Tensor, cos_ME: torch.Tensor, sin_ME: torch.Tensor, kv_cache_SCME: torch.Tensor,
        batch: AttentionBatch, B: int, T: int) -> torch.Tensor:
    """The layer's output for x_ND (a new tensor; x_ND is left as it was). cos_ME / sin_ME: the
    rotary tables (sin sign-folded), read at each token's position."""
    H, G, E = w.num_heads, w.num_kv_heads, w.head_dim
    N, D = x_ND.shape
    I2 = w.gate_up_DI.t.shape[1]
    out_ND, layer_scratch = x_ND.clone(), scratch(N, w)
    c_s, c_c, c_m, _ = kv_cache_SCME.stride()
    rows, positions = batch.rows_BT, batch.positions_BT
    status = cpu_kernels.library().decoder_layer(  # type: ignore[union-attr]
        B, T, D, H, G, E, I2 // 2, w.eps_value, int(w.has_input_norm),
        out_ND.data_ptr(), w.qkv_DC.packed.data_ptr(), None if w.qk_weight_CE is None else w.qk_weight_CE.data_ptr(),
        w.o_DD.packed.data_ptr(), w.gate_up_DI.packed.data_ptr(), w.down_ID.packed.data_ptr(),
        cos_ME.data_ptr(), sin_ME.data_ptr(),
        kv_cache_SCME.data_ptr(), c_s, c_c, c_m, batch.row_start, batch.kv_len, int(batch.masked),
        rows.data_ptr(), rows.stride(0), rows.stride(1), positions.data_ptr(), positions.stride(0), positions.stride(1),
        layer_scratch.data_ptr())
    if status != 0:
        raise MemoryError(f"decoder layer kernel: no memory for {batch.kv_len} attention scores")
    return out_ND
