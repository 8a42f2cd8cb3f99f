"""The EAGLE drafter's chain of k draws and k - 1 head steps as one C call (kernels/eagle_chain.c)
for fp32 on CPU: the same kernels in the same order as the Python loop in drafters/eagle.py, so
the proposal is identical, without ~50 us of dispatch per drafted token. `run` returns False when
the call does not apply (torch fallback, top-k / top-p, biased or input-normed head layer, ...)
and the caller runs the loop.

Shape legend: B rows, K drafted, V vocab, D hidden.
"""

from __future__ import annotations

import torch

from rollspec.engine import cpu_kernels
from rollspec.engine.cached_forward import fold
from rollspec.engine.drafters.draws import DraftDraws
from rollspec.engine.eagle_head import EagleHead
from rollspec.engine.kv_cache import KVCache
from rollspec.engine.small_attention import heads_fit

_F32 = torch.float32


def run(head: EagleHead, embedding: torch.nn.Embedding, cache: KVCache, feature_B1D: torch.Tensor,
        lens: list[int], draws: DraftDraws) -> bool:
    """Fill draws.tokens_BK / draws.q_BKV from the catch-up's last features; rows' chains start at
    positions `lens`. False (nothing done) when the kernel does not apply."""
    if not (draws.kernel_ready and feature_B1D.dtype is _F32 and feature_B1D.is_cpu):
        return False
    w = fold(head.layers[0])
    table_VD, feature_DD = head._fc_halves(embedding)
    kv_SCME, rotary = cache.layers_SCME[0], head.rotary
    H, G, E = w.num_heads, w.num_kv_heads, w.head_dim
    if not (w.qkv_DC.packed is not None and feature_DD.packed is not None and w.qkv_bias is None
            and w.o_bias is None and not w.has_input_norm and heads_fit(H, G, E) and table_VD.dtype is _F32
            and kv_SCME.dtype is _F32 and kv_SCME.stride(-1) == 1 and rotary.cos.stride(0) == E
            and kv_SCME.shape[2] <= rotary.cos.shape[0]):
        return False
    B, K = draws.tokens_BK.shape
    D, V = feature_B1D.shape[-1], draws.q_BKV.shape[2]
    I2 = w.gate_up_DI.t.shape[1]
    feature_BD = feature_B1D.reshape(B, D).clone()  # the kernel overwrites it step by step
    x_BD, positions_B, rows_B = torch.empty(B, D, dtype=_F32), torch.empty(B, dtype=torch.long), torch.empty(
        B, dtype=torch.long)
    lens_B = torch.tensor(lens, dtype=torch.long)
    layer_scratch = torch.empty(B * ((H + 2 * G) * E + H * E + I2) + E, dtype=_F32)
    st, u_BK = draws.sampling, draws.uniforms_BK
    c_s, c_c, c_m, _ = kv_SCME.stride()
    status = cpu_kernels.library().eagle_chain(  # type: ignore[union-attr]
        B, K, D, V, H, G, E, I2 // 2, w.eps_value, feature_BD.data_ptr(),
        draws.lm_packed.data_ptr(), st.temperature_B.data_ptr(), st.is_greedy_B.data_ptr(), int(st.unit_temperature),
        u_BK.data_ptr(), u_BK.stride(0), table_VD.data_ptr(), feature_DD.packed.data_ptr(),
        w.qkv_DC.packed.data_ptr(), None if w.qk_weight_CE is None else w.qk_weight_CE.data_ptr(),
        w.o_DD.packed.data_ptr(), w.gate_up_DI.packed.data_ptr(), w.down_ID.packed.data_ptr(),
        rotary.cos.data_ptr(), rotary.sin_signed.data_ptr(), kv_SCME.data_ptr(), c_s, c_c, c_m,
        lens_B.data_ptr(), cache.max_len, draws.tokens_BK.data_ptr(), draws.q_BKV.data_ptr(),
        x_BD.data_ptr(), positions_B.data_ptr(), rows_B.data_ptr(), draws.scratch.data_ptr(), layer_scratch.data_ptr())
    if status != 0:
        raise MemoryError(f"EAGLE chain kernel: no memory for {max(lens) + K} attention scores")
    return True
