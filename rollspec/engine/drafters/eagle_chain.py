"""The EAGLE drafter's catch-up and draft chain as C calls (kernels/eagle_chain.c) for fp32 on CPU:
the same kernels in the same order as the Python path of drafters/eagle.py, so the proposal is
identical, without ~50 us of dispatch per head step and ~100 us of gathers and batch metadata per
catch-up. Each function returns None / False when its call does not apply (torch fallback,
top-k / top-p, a biased or input-normed head layer, ...) and the caller runs the Python path.

Shape legend: B rows, K drafted, V vocab, D hidden, S slots, M cached positions per row.
"""

from __future__ import annotations

import dataclasses
import weakref

import torch

from rollspec.engine import cpu_kernels, fused_layer
from rollspec.engine.cached_forward import FoldedLayer, fold, source_key
from rollspec.engine.drafters.base import DraftContext
from rollspec.engine.drafters.draws import DraftDraws
from rollspec.engine.eagle_head import EagleHead
from rollspec.engine.kv_cache import KVCache
from rollspec.engine.small_gemm import ProjWeight

_F32 = torch.float32


@dataclasses.dataclass(frozen=True, slots=True)
class _Head:
    """The head's weights and cache as the kernels take them, built once and kept on the head while no
    tensor in `sources` changes in place or moves and the cache keeps its storage (one pass over a dozen
    tensors, where re-folding and re-reading them cost ~13 us per proposal)."""

    w: FoldedLayer
    table_VD: torch.Tensor
    feature_DD: ProjWeight
    max_len: int
    layer_args: tuple  # decoder_layer's weight, rotary and cache arguments, as both kernels take them
    dims: tuple  # H, G, E, I, eps
    embedding: torch.nn.Embedding
    cache: weakref.ref  # not the cache itself: the head outlives the engines whose caches it ran over
    kv_ptr: int
    sources: tuple[torch.Tensor, ...]
    key: list[tuple[int, int]]

    def holds(self, embedding: torch.nn.Embedding, cache: KVCache) -> bool:
        return (embedding is self.embedding and self.cache() is cache and cache.kv_NSCME.data_ptr() == self.kv_ptr
                and source_key(self.sources) == self.key)


def kernel_head(head: EagleHead, embedding: torch.nn.Embedding, cache: KVCache) -> _Head | None:
    """The head as the kernels take it, or None when they do not apply to it."""
    if not cpu_kernels.active:
        return None
    built = head.__dict__.get("_kernel_head")
    if built is not None and built.holds(embedding, cache):
        return built
    w = fold(head.layers[0])
    table_VD, feature_DD = head.fc_halves(embedding)
    kv_SCME, rotary = cache.layers_SCME[0], head.rotary
    if not (fused_layer.layer_fits(w) and feature_DD.packed is not None and not w.has_input_norm
            and table_VD.dtype is _F32 and table_VD.is_contiguous() and kv_SCME.dtype is _F32
            and kv_SCME.stride(-1) == 1 and rotary.cos.stride(0) == w.head_dim
            and kv_SCME.shape[2] <= rotary.cos.shape[0]):
        return None
    c_s, c_c, c_m, _ = kv_SCME.stride()
    layer_args = (w.qkv_DC.packed.data_ptr(), None if w.qk_weight_CE is None else w.qk_weight_CE.data_ptr(),
                  w.o_DD.packed.data_ptr(), w.gate_up_DI.packed.data_ptr(), w.down_ID.packed.data_ptr(),
                  rotary.cos.data_ptr(), rotary.sin_signed.data_ptr(), kv_SCME.data_ptr(), c_s, c_c, c_m)
    dims = (w.num_heads, w.num_kv_heads, w.head_dim, w.gate_up_DI.t.shape[1] // 2, w.eps_value)
    sources = w.sources + (head.fc.weight, embedding.weight, rotary.cos, rotary.sin_signed)
    built = _Head(w, table_VD, feature_DD, cache.max_len, layer_args, dims, embedding, weakref.ref(cache),
                  cache.kv_NSCME.data_ptr(), sources, source_key(sources))
    head.__dict__["_kernel_head"] = built
    return built


def catch_up(head: _Head, ctx: DraftContext, lens: list[int], num_new: list[int],
             groups: list[tuple[int, int]]) -> torch.Tensor | None:
    """EagleDrafter._catch_up over each row group: each row's last output feature [B, 1, D], or
    None when the context's tensors are not laid out as the kernel reads them."""
    hidden_SMD, slots_B, tokens_BM = ctx.hidden_SMD, ctx.hidden_slots_B, ctx.tokens_BM
    B, (_, M, D) = ctx.num_rows, hidden_SMD.shape
    if not (hidden_SMD.dtype is _F32 and hidden_SMD.stride(2) == 1 and hidden_SMD.stride(1) == D
            and slots_B.dtype is torch.long and slots_B.is_contiguous()
            and tokens_BM.dtype is torch.long and tokens_BM.stride(1) == 1):
        return None
    feature_BD = torch.empty(B, D, dtype=_F32)
    widest = max(num_new)
    x, f_in = torch.empty(B * widest, D, dtype=_F32), torch.empty(B * widest, D, dtype=_F32)
    positions, rows = torch.empty(B * widest, dtype=torch.long), torch.empty(B, dtype=torch.long)
    lens_B, num_new_B = torch.tensor(lens, dtype=torch.long), torch.tensor(num_new, dtype=torch.long)
    scratch = fused_layer.scratch(B * widest, head.w)
    H, G, E, I, eps = head.dims
    for start, end in groups:
        width = max(num_new[start:end])
        status = cpu_kernels.library().eagle_catch_up(  # type: ignore[union-attr]
            end - start, start, width, D, head.table_VD.shape[0], H, G, E, I, eps,
            hidden_SMD.data_ptr(), hidden_SMD.stride(0), slots_B.data_ptr(), tokens_BM.data_ptr(), tokens_BM.stride(0),
            M, lens_B.data_ptr() + 8 * start,
            num_new_B.data_ptr() + 8 * start, head.table_VD.data_ptr(), head.feature_DD.packed.data_ptr(),
            *head.layer_args, head.max_len, feature_BD.data_ptr() + 4 * D * start, x.data_ptr(), f_in.data_ptr(),
            positions.data_ptr(), rows.data_ptr(), scratch.data_ptr())
        cpu_kernels.check_status(status, "EAGLE catch-up kernel")
    return feature_BD[:, None]


def chain(head: _Head, feature_B1D: torch.Tensor, lens: list[int], draws: DraftDraws) -> bool:
    """Fill draws.tokens_BK / draws.q_BKV from the catch-up's last features; rows' chains start at
    positions `lens`. False (nothing done) when the kernel does not apply."""
    if not (draws.kernel_ready and feature_B1D.dtype is _F32 and feature_B1D.is_cpu):
        return False
    B, K = draws.tokens_BK.shape
    D, V = feature_B1D.shape[-1], draws.q_BKV.shape[2]
    feature_BD = feature_B1D.reshape(B, D).clone()  # the kernel overwrites it step by step
    x_BD, positions_B, rows_B = (torch.empty(B, D, dtype=_F32), torch.empty(B, dtype=torch.long),
                                 torch.empty(B, dtype=torch.long))
    lens_B = torch.tensor(lens, dtype=torch.long)
    st, u_BK = draws.sampling, draws.uniforms_BK
    H, G, E, I, eps = head.dims
    scratch = fused_layer.scratch(B, head.w)
    status = cpu_kernels.library().eagle_chain(  # type: ignore[union-attr]
        B, K, D, V, H, G, E, I, eps, feature_BD.data_ptr(),
        draws.lm_packed.data_ptr(), st.temperature_B.data_ptr(), st.is_greedy_B.data_ptr(), int(st.unit_temperature),
        u_BK.data_ptr(), u_BK.stride(0), head.table_VD.data_ptr(), head.feature_DD.packed.data_ptr(),
        *head.layer_args, lens_B.data_ptr(), head.max_len, draws.tokens_BK.data_ptr(), draws.q_BKV.data_ptr(),
        x_BD.data_ptr(), positions_B.data_ptr(), rows_B.data_ptr(), draws.scratch.data_ptr(), scratch.data_ptr())
    cpu_kernels.check_status(status, "EAGLE chain kernel")
    return True
