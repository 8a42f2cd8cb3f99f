"""The generation-time forward over the KV cache (prefill, decode, verify, drafting), written as
plain tensor ops on the layers' weights.

Why not the nn.Module path: at the zoo's size (1.75M parameters) a decode step is bound by
per-op dispatch and Python, not FLOPs; module calls, per-tensor RoPE, separate residual adds and
F.rms_norm (six ops on CPU: pow, mean, add, rsqrt, mul, mul) cost more than the matmuls. Same
math as `model.DecoderLayer` (transformers stays the oracle), rearranged:
- tokens are flattened to N = B*T rows so residuals fold into the projections (addmm);
- an RMS norm's weight is folded into the next projection's weight (cached, see `fold`) and its
  per-row scale rsqrt(mean(x^2) + eps) is applied to the projection's output, from one
  vector_norm: (x * s * w) @ W == s * (x @ (w * W));
- q and k are normed and rotated in place inside the qkv output, so k and v stay adjacent and
  go into the cache (one [2G] tensor per layer) with one write.
For fp32 on CPU a whole layer is one C call (`fused_layer`, same math); the ops below are the
path for everything else. Every op computes each row on its own, so a verify step reproduces the
decode step's numbers position by position: bit for bit through the C kernels (each token's row
is the same instruction sequence whatever else is in the call), up to float rounding through
torch (MKL's sgemm picks its kernel by row count; masked SDPA over T > 1 tokens rounds
differently from T = 1).

Shape legend: B rows, T tokens per row, N = B*T, D hidden, H heads, G kv heads, C heads of qkv
(H + 2G), E head dim, I intermediate, L keys attended, M cached positions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from rollspec.engine import cpu_kernels, fused_layer
from rollspec.engine.kv_cache import AttentionBatch, KVCache
from rollspec.engine.small_attention import attend
from rollspec.engine.small_gemm import ProjWeight, proj_weight

LOW_PRECISION = (torch.bfloat16, torch.float16)


def rope_tables(cos_ME: torch.Tensor, sin_ME: torch.Tensor, positions_BT: torch.Tensor,
                dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sign-folded sin rows for N tokens, [N, 1, E]: rotate_half(x) * sin equals
    x.roll(E/2) * sin_signed with sin's first half negated, one op instead of slice/neg/cat."""
    flat_N = positions_BT.reshape(-1)
    cos_NE, sin_NE = cos_ME.index_select(0, flat_N), sin_ME.index_select(0, flat_N)
    if cos_NE.dtype != dtype:
        cos_NE, sin_NE = cos_NE.to(dtype), sin_NE.to(dtype)
    return cos_NE[:, None], sin_NE[:, None]


def rms_scale(x_XD: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """rsqrt(mean(x^2) + eps) per row, [..., 1]: three ops where F.rms_norm dispatches six, and
    the caller applies it wherever it is cheapest (usually to a projection's output). `eps` is a
    0-d tensor in the compute dtype (float32 for low-precision x, like F.rms_norm's upcast); the
    scale comes back in x's dtype."""
    norm_X1 = torch.linalg.vector_norm(x_XD, dim=-1, keepdim=True, dtype=eps.dtype)
    scale_X1 = torch.addcmul(eps, norm_X1, norm_X1, value=1.0 / x_XD.shape[-1]).rsqrt_()
    return scale_X1 if scale_X1.dtype == x_XD.dtype else scale_X1.to(x_XD.dtype)


def rms_norm(x_XD: torch.Tensor, weight_D: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """F.rms_norm(x, weight) through `rms_scale` (five ops instead of seven)."""
    return (x_XD * rms_scale(x_XD, eps)).mul_(weight_D)


def final_norm(x_ND: torch.Tensor, weight_D: torch.Tensor, eps: float) -> torch.Tensor:
    """`rms_norm` of a forward's last hidden states [N, D]: one C call for fp32 on CPU (~40 us of
    five torch ops at a decode step otherwise)."""
    if (cpu_kernels.active and x_ND.dtype is torch.float32 and weight_D.dtype is torch.float32 and x_ND.is_cpu
            and weight_D.is_cpu and x_ND.is_contiguous() and weight_D.is_contiguous() and not x_ND.requires_grad):
        out_ND = torch.empty_like(x_ND)
        N, D = x_ND.shape
        cpu_kernels.library().rms_norm_rows(N, D, x_ND.data_ptr(), weight_D.data_ptr(), eps,  # type: ignore[union-attr]
                                            out_ND.data_ptr())
        return out_ND
    return rms_norm(x_ND, weight_D, eps_tensor(eps, weight_D))


class LayerInputs:
    """What the layers of one cached forward share: the rotary tables, the KV cache and the batch.
    The torch path's per-token RoPE rows and per-layer key/value views are built on first use, once
    per forward: the C layer kernel reads the tables at each token's position and the cache
    directly, so a forward through it never builds them."""

    __slots__ = ("cos_ME", "sin_ME", "cache", "batch", "dtype", "_rope", "_kv")

    def __init__(self, rotary, cache: KVCache, batch: AttentionBatch, dtype: torch.dtype) -> None:
        self.cos_ME, self.sin_ME = rotary.cos, rotary.sin_signed
        self.cache, self.batch, self.dtype = cache, batch, dtype
        self._rope: tuple[torch.Tensor, torch.Tensor] | None = None
        self._kv: tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]] | None = None

    def rope(self) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sign-folded sin rows of the batch's tokens, [N, 1, E] (`rope_tables`)."""
        if self._rope is None:
            self._rope = rope_tables(self.cos_ME, self.sin_ME, self.batch.positions_BT, self.dtype)
        return self._rope

    def keys_values(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer `layer`'s keys and values the batch attends to, [B, G, L, E] views (`KVCache.attended`)."""
        if self._kv is None:
            self._kv = self.cache.attended(self.batch)
        return self._kv[0][layer], self._kv[1][layer]


def layer_forward(layer, x_ND: torch.Tensor, inputs: LayerInputs, index: int, B: int, T: int) -> torch.Tensor:
    """Decoder layer `index` of a cached forward on flattened tokens; writes this step's keys and
    values into the layer's cache rows at batch.positions_BT, then attends over the same cache:
    rows [row_start, row_end), positions [0, batch.kv_len)."""
    w = fold(layer)
    batch, kv_cache_SCME = inputs.batch, inputs.cache.layers_SCME[index]
    if fused_layer.fits(w, x_ND, inputs.cos_ME, kv_cache_SCME, batch):
        return fused_layer.run(w, x_ND, inputs.cos_ME, inputs.sin_ME, kv_cache_SCME, batch, B, T)
    cos_N1E, sin_N1E = inputs.rope()
    keys_BGLE, values_BGLE = inputs.keys_values(index)
    H, G, E = w.num_heads, w.num_kv_heads, w.head_dim
    N = x_ND.shape[0]
    qkv_NC = w.qkv_DC.mm(x_ND)
    if w.has_input_norm:
        scale_N1 = rms_scale(x_ND, w.eps)
        qkv_NC = qkv_NC.mul_(scale_N1) if w.qkv_bias is None else torch.addcmul(w.qkv_bias, qkv_NC, scale_N1)
    elif w.qkv_bias is not None:
        qkv_NC = qkv_NC.add_(w.qkv_bias)
    # Views into the contiguous [N, C*E] output, one as_strided each instead of view/narrow/transpose chains.
    C, base = H + 2 * G, qkv_NC.storage_offset()
    qk_NCE = qkv_NC.as_strided((N, H + G, E), (C * E, E, 1), base)
    if w.qk_weight_CE is not None:  # per-head norms of q and k in one pass: same eps, one weight per head
        qk_NCE.mul_(rms_scale(qk_NCE, w.eps)).mul_(w.qk_weight_CE)
    rolled_NCE = qk_NCE.roll(E // 2, dims=-1)
    qk_NCE.mul_(cos_N1E).addcmul_(rolled_NCE, sin_N1E)
    # Advanced indices around a slice put the indexed dims first: [B, T, 2G, E].
    kv_cache_SCME[batch.rows_BT, :, batch.positions_BT] = qkv_NC.as_strided(
        (B, T, 2 * G, E), (T * C * E, C * E, E, 1), base + H * E)
    q_BHTE = qkv_NC.as_strided((B, H, T, E), (T * C * E, E, C * E, 1), base)
    out_NC = attend(q_BHTE, keys_BGLE, values_BGLE, batch).reshape(N, H * E)
    x_ND = w.o_DD.addmm(x_ND, out_NC)
    if w.o_bias is not None:
        x_ND = x_ND.add_(w.o_bias)
    return gated_mlp_residual(x_ND, w.gate_up_DI, w.down_ID, w.eps)


def project(x_XD: torch.Tensor, linear) -> torch.Tensor:
    """linear(x) without bias through the cached [in, out] weight (`proj_weight_of`): the LM head
    at generation time. Not for training: the copy carries no gradient."""
    return proj_weight_of(linear).mm(x_XD.reshape(-1, x_XD.shape[-1])).view(*x_XD.shape[:-1], -1)


def source_key(sources) -> list[tuple[int, int]]:
    """What shows that cached copies of these tensors are stale: each one's in-place write counter
    (`_version`: load_native and optimizers bump it) and storage address (`module.to(dtype)` moves it)."""
    return [(t._version, t.data_ptr()) for t in sources]


def cached_on(module, name: str, sources: tuple[torch.Tensor, ...], build: Callable[[], Any]) -> Any:
    """build()'s result, cached in module.__dict__[name] and rebuilt when any source tensor changes
    in place (`_version`: load_native and optimizers bump it) or gets new storage (data_ptr:
    `module.to(dtype)`). Built outside inference mode: normal tensors, usable in any mode."""
    key = source_key(sources)
    cached = module.__dict__.get(name)
    if cached is None or cached[0] != key:
        with torch.inference_mode(False), torch.no_grad():
            cached = module.__dict__[name] = (key, build())
    return cached[1]


def weight_t(linear) -> torch.Tensor:
    """The projection's weight as a contiguous [in, out] copy, cached on the module (`cached_on`)."""
    w = linear.weight
    return cached_on(linear, "_weight_t_cache", (w,), lambda: w.detach().t().contiguous())


def proj_weight_of(linear) -> ProjWeight:
    """`weight_t` as a ProjWeight (packed for the small-row kernel where it runs), cached on the module."""
    w = linear.weight
    return cached_on(linear, "_proj_weight_cache", (w,), lambda: proj_weight(w.detach().t()))


def eps_tensor(eps: float, weight: torch.Tensor) -> torch.Tensor:
    """A norm's eps as the 0-d tensor `rms_scale` takes: float32 for low-precision weights, else their dtype."""
    return torch.tensor(eps, dtype=torch.float32 if weight.dtype in LOW_PRECISION else weight.dtype,
                        device=weight.device)


def gated_mlp_residual(x_ND: torch.Tensor, gate_up_DI: ProjWeight, down_ID: ProjWeight,
                       eps: torch.Tensor) -> torch.Tensor:
    """x + down(silu(gate) * up) of rms_norm(x), the norm's weight folded into gate_up_DI."""
    gate_up_NI = gate_up_DI.mm(x_ND).mul_(rms_scale(x_ND, eps))
    inner = gate_up_NI.shape[1] // 2
    act_NI = F.silu(gate_up_NI.narrow(1, 0, inner)).mul_(gate_up_NI.narrow(1, inner, inner))
    return down_ID.addmm(x_ND, act_NI)


@dataclasses.dataclass(frozen=True, slots=True)
class FoldedLayer:
    """A decoder layer's weights as the cached forward reads them: projections as contiguous
    [in, out] copies (small-row matmuls read them 10-35% faster than [out, in], measured at 1-16
    rows on this CPU), with the input norm's weight folded into qkv and the post-attention
    norm's into gate_up; q_norm's weight repeated over the H query heads then k_norm's over the
    G kv heads."""

    sources: tuple[torch.Tensor, ...]
    versions: list[tuple[int, int]]  # source_key of the sources when folded
    num_heads: int
    num_kv_heads: int
    head_dim: int
    has_input_norm: bool
    eps: torch.Tensor
    eps_value: float  # the same eps as a Python float, for the C kernels (no tensor read per call)
    qkv_DC: ProjWeight
    qkv_bias: torch.Tensor | None
    qk_weight_CE: torch.Tensor | None
    o_DD: ProjWeight
    o_bias: torch.Tensor | None
    gate_up_DI: ProjWeight
    down_ID: ProjWeight


def fold(layer) -> FoldedLayer:
    """The layer's FoldedLayer, cached on the module and rebuilt when any source weight changes in
    place (load_native and optimizers bump `_version`) or gets new storage (`module.to(dtype)`).
    A Parameter object swapped in after the first cached forward is not seen."""
    cached = layer.__dict__.get("_folded")
    if cached is not None and source_key(cached.sources) == cached.versions:
        return cached
    with torch.inference_mode(False), torch.no_grad():  # normal tensors, usable in any mode
        cached = layer.__dict__["_folded"] = _build(layer)
    return cached


def _build(layer) -> FoldedLayer:
    attn, mlp = layer.self_attn, layer.mlp
    in_norm, post_norm = layer.input_layernorm, layer.post_attention_layernorm
    qkv, o = attn.qkv_proj, attn.o_proj
    has_input_norm = hasattr(in_norm, "weight")
    qkv_CD = qkv.weight.detach() * in_norm.weight.detach() if has_input_norm else qkv.weight.detach()
    qk_weight_CE = None
    if attn.q_norm is not None:
        qk_weight_CE = torch.cat([attn.q_norm.weight.detach().expand(attn.num_heads, -1),
                                  attn.k_norm.weight.detach().expand(attn.num_kv_heads, -1)])
    sources = [qkv.weight, o.weight, post_norm.weight, mlp.gate_up_proj.weight, mlp.down_proj.weight]
    sources += [t for t in (qkv.bias, o.bias) if t is not None]
    sources += [in_norm.weight] if has_input_norm else []
    sources += [attn.q_norm.weight, attn.k_norm.weight] if attn.q_norm is not None else []
    return FoldedLayer(
        sources=tuple(sources), versions=source_key(sources),
        num_heads=attn.num_heads, num_kv_heads=attn.num_kv_heads, head_dim=attn.head_dim,
        has_input_norm=has_input_norm,
        eps=eps_tensor(post_norm.eps, qkv.weight), eps_value=float(post_norm.eps),
        qkv_DC=proj_weight(qkv_CD.t()), qkv_bias=None if qkv.bias is None else qkv.bias.detach().clone(),
        qk_weight_CE=qk_weight_CE, o_DD=proj_weight(o.weight.detach().t()),
        o_bias=None if o.bias is None else o.bias.detach().clone(),
        gate_up_DI=proj_weight((mlp.gate_up_proj.weight.detach() * post_norm.weight.detach()).t()),
        down_ID=proj_weight(mlp.down_proj.weight.detach().t()))
