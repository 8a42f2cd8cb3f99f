"""A decoder's whole cached forward (embedding, every layer, final norm) in one C call for fp32 on
CPU (kernels/layer.c decoder_forward): the per-layer path's kernels in the same order, so the
hidden states are identical, without a Python round trip per layer (~20 us each: fold and fit
checks, output and scratch tensors, a 31-argument ctypes call).

`forward` returns None when the call does not apply (torch fallback, biased or mixed layers,
several threads on many rows, ...) and Decoder._forward_cached runs the per-layer path.

Shape legend: B rows, T tokens per row, N = B*T, D hidden, L layers.
"""

from __future__ import annotations

import dataclasses
import weakref

import torch

from rollspec.engine import cpu_kernels, fused_layer
from rollspec.engine.cached_forward import FoldedLayer, fold, source_key
from rollspec.engine.kv_cache import AttentionBatch, KVCache
from rollspec.engine.small_gemm import MULTI_THREAD_MAX_ROWS

_F32 = torch.float32
_NO_STORE = (None, 0, None)


@dataclasses.dataclass(frozen=True, slots=True)
class _Stack:
    """The layers' packed weights as a pointer table (valid while the folded layers live)."""

    first: FoldedLayer  # every layer has its shape (`dims`)
    weights_L5: torch.Tensor  # int64 addresses: qkv, qk norm (0: none), o, gate_up, down per layer
    eps_L: torch.Tensor
    dims: tuple[int, int, int, int, int]  # H, G, E, I, has_input_norm

    @property
    def num_layers(self) -> int:
        return len(self.eps_L)

    def scratch(self, num_tokens: int) -> torch.Tensor:
        return fused_layer.scratch(num_tokens, self.first)


def _build(folded: tuple[FoldedLayer, ...]) -> _Stack | None:
    first = folded[0]
    dims = (first.num_heads, first.num_kv_heads, first.head_dim, first.gate_up_DI.t.shape[1] // 2,
            int(first.has_input_norm))
    rows = []
    for w in folded:
        if not (fused_layer.layer_fits(w)
                and (w.num_heads, w.num_kv_heads, w.head_dim, w.gate_up_DI.t.shape[1] // 2,
                     int(w.has_input_norm)) == dims):
            return None
        rows.append([w.qkv_DC.packed.data_ptr(), 0 if w.qk_weight_CE is None else w.qk_weight_CE.data_ptr(),
                     w.o_DD.packed.data_ptr(), w.gate_up_DI.packed.data_ptr(), w.down_ID.packed.data_ptr()])
    eps_L = torch.tensor([w.eps_value for w in folded], dtype=_F32)
    return _Stack(first, torch.tensor(rows, dtype=torch.long), eps_L, dims)


def _stack(model) -> _Stack | None:
    """The model's stack, rebuilt when any layer's folded weights were (fold() then returns a new object)."""
    folded = tuple(fold(layer) for layer in model.layers)
    cached = model.__dict__.get("_fused_stack")
    if cached is None or len(cached[0]) != len(folded) or any(a is not b for a, b in zip(cached[0], folded)):
        cached = model.__dict__["_fused_stack"] = (folded, _build(folded))  # holds the folded weights alive
    return cached[1]


@dataclasses.dataclass(frozen=True, slots=True)
class Bound:
    """A stack ready to run over one cache: `args` are decoder_forward's arguments from the embedding to
    the cache strides (draft_chain takes them too). They hold while no tensor in `sources` changes in
    place or moves and the cache keeps its storage; checking that is one pass over ~30 tensors (~4 us),
    where re-folding every layer and re-reading the arguments cost ~20 us per call at the zoo's sizes."""

    stack: _Stack
    args: tuple
    cache: weakref.ref  # not the cache itself: a model outlives the engines whose caches it ran over
    kv_ptr: int
    sources: tuple[torch.Tensor, ...]
    key: list[tuple[int, int]]

    def holds(self, model, cache: KVCache) -> bool:
        return (self.cache() is cache and cache.kv_NSCME.data_ptr() == self.kv_ptr
                and source_key(self.sources) == self.key
                and not model.embed_tokens.weight.requires_grad)


def ready(model, cache: KVCache) -> Bound | None:
    """The model's stack bound to `cache` when the C forward applies to `model` (a Decoder) over it, else None."""
    if not cpu_kernels.active:
        return None
    bound = model.__dict__.get("_fused_bound")
    if bound is not None and bound.holds(model, cache):
        return bound
    embed_VD, norm_D, kv, cos_ME = model.embed_tokens.weight, model.norm.weight, cache.kv_NSCME, model.rotary.cos
    if not (embed_VD.dtype is _F32 and embed_VD.is_cpu and embed_VD.is_contiguous() and not embed_VD.requires_grad
            and norm_D.dtype is _F32 and norm_D.is_contiguous() and kv.dtype is _F32 and kv.is_contiguous()
            and cos_ME.stride(-1) == 1 and kv.shape[3] <= cos_ME.shape[0]):
        return None
    stack = _stack(model)
    if stack is None or cos_ME.stride(0) != stack.dims[2]:
        return None
    c_l, c_s, c_c, c_m, _ = kv.stride()
    args = (embed_VD.data_ptr(), stack.weights_L5.data_ptr(), stack.eps_L.data_ptr(), cos_ME.data_ptr(),
            model.rotary.sin_signed.data_ptr(), kv.data_ptr(), c_l, c_s, c_c, c_m)
    folded = model.__dict__["_fused_stack"][0]
    sources = (embed_VD, norm_D, cos_ME, model.rotary.sin_signed) + tuple(t for w in folded for t in w.sources)
    bound = Bound(stack, args, weakref.ref(cache), kv.data_ptr(), sources, source_key(sources))
    model.__dict__["_fused_bound"] = bound
    return bound


def forward(model, input_ids_BT: torch.Tensor, cache: KVCache, batch: AttentionBatch) -> torch.Tensor | None:
    """Final-norm hidden states [N, D] of `model` (a Decoder) over the cache, or None. With a hidden store on the
    cache they are also written into it."""
    B, T = input_ids_BT.shape
    if not (cpu_kernels.active and input_ids_BT.dtype is torch.long and input_ids_BT.is_cpu
            and batch.positions_BT.dtype is torch.long and batch.rows_BT.dtype is torch.long
            and (B * T <= MULTI_THREAD_MAX_ROWS or torch.get_num_threads() == 1)):
        return None
    bound = ready(model, cache)
    if bound is None:
        return None
    stack = bound.stack
    H, G, E, I, has_input_norm = stack.dims
    N, D = B * T, model.embed_tokens.weight.shape[1]
    x_ND, out_ND, scratch = torch.empty(N, D, dtype=_F32), torch.empty(N, D, dtype=_F32), stack.scratch(N)
    store = cache.hidden  # the final hidden states also go there, in the same call (engine/hidden_store.py)
    store_args = _NO_STORE if store is None else store.kernel_args
    if store_args is None:
        return None
    rows, positions = batch.rows_BT, batch.positions_BT
    status = cpu_kernels.library().decoder_forward(  # type: ignore[union-attr]
        stack.num_layers, B, T, D, model.embed_tokens.weight.shape[0], H, G, E, I, has_input_norm,
        input_ids_BT.data_ptr(), input_ids_BT.stride(0), input_ids_BT.stride(1), *bound.args,
        batch.row_start, batch.kv_len, int(batch.masked),
        rows.data_ptr(), rows.stride(0), rows.stride(1), positions.data_ptr(), positions.stride(0), positions.stride(1),
        model.norm.weight.data_ptr(), float(model.norm.eps), x_ND.data_ptr(), out_ND.data_ptr(), scratch.data_ptr(),
        *store_args)
    cpu_kernels.check_status(status, "decoder forward kernel")
    return out_ND
