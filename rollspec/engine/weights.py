"""Name mapping between Hugging Face checkpoints and the engine's fused layout, and validated
in-place weight loading. Hugging Face names are the wire format: checkpoints, weight broadcasts
and the vLLM backend all use them."""

from __future__ import annotations

import re

import torch
from torch import nn

from rollspec.engine.errors import WeightUpdateError
from rollspec.engine.model_config import ModelConfig

_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
_FUSED = {  # native suffix -> HF suffixes concatenated along dim 0, in order
    "self_attn.qkv_proj.weight": ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"),
    "self_attn.qkv_proj.bias": ("self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"),
    "mlp.gate_up_proj.weight": ("mlp.gate_proj.weight", "mlp.up_proj.weight"),
}
_HF_TO_FUSED = {hf: (native, i) for native, parts in _FUSED.items() for i, hf in enumerate(parts)}


def hf_to_native(state_hf: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Rename and fuse decoder weights; names outside the decoder (e.g. `mtp.*`) are rejected."""
    native: dict[str, torch.Tensor] = {}
    parts: dict[str, dict[int, torch.Tensor]] = {}
    unexpected = []
    for name, tensor in state_hf.items():
        if name == "lm_head.weight":
            if not cfg.tie_word_embeddings:
                native[name] = tensor
            continue
        if name.startswith("model.") and not name.startswith("model.layers."):
            native[name.removeprefix("model.")] = tensor
            continue
        match = _LAYER.match(name)
        if match is None:
            unexpected.append(name)
            continue
        layer, suffix = match.groups()
        if suffix in _HF_TO_FUSED:
            fused, index = _HF_TO_FUSED[suffix]
            parts.setdefault(f"layers.{layer}.{fused}", {})[index] = tensor
        else:
            native[f"layers.{layer}.{suffix}"] = tensor
    if unexpected:
        raise WeightUpdateError(f"unexpected weight names {sorted(unexpected)[:8]}")
    for name, pieces in parts.items():
        expected = len(_FUSED[name.split(".", 2)[2]])
        if sorted(pieces) != list(range(expected)):
            raise WeightUpdateError(f"{name}: got {len(pieces)} of its {expected} parts")
        native[name] = torch.cat([pieces[i] for i in range(expected)], dim=0)
    return native


def native_to_hf(model: nn.Module) -> dict[str, torch.Tensor]:
    """The decoder's weights under Hugging Face names (views, not copies, where possible)."""
    cfg: ModelConfig = model.config
    q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    splits = {"self_attn.qkv_proj": [q, kv, kv], "mlp.gate_up_proj": [cfg.intermediate_size] * 2}
    out: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":
            if not cfg.tie_word_embeddings:
                out[name] = tensor
            continue
        if not name.startswith("layers."):
            out[f"model.{name}"] = tensor
            continue
        _, layer, suffix = name.split(".", 2)
        if suffix not in _FUSED:
            out[f"model.layers.{layer}.{suffix}"] = tensor
            continue
        pieces = tensor.split(splits[suffix.rsplit(".", 1)[0]], dim=0)
        for hf_suffix, piece in zip(_FUSED[suffix], pieces):
            out[f"model.layers.{layer}.{hf_suffix}"] = piece
    return out


def load_native(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy `state` into `module` in place after checking every name, shape and dtype kind.

    All checks happen before the first copy, so a bad update leaves the old weights intact.
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state) - _tied_names(module))
    unexpected = sorted(set(state) - set(own))
    bad_shapes = [f"{n}: {tuple(state[n].shape)} != {tuple(own[n].shape)}"
                  for n in state if n in own and state[n].shape != own[n].shape]
    bad_kinds = [n for n in state if n in own and state[n].is_floating_point() != own[n].is_floating_point()]
    if missing or unexpected or bad_shapes or bad_kinds:
        raise WeightUpdateError(
            f"weight update rejected: missing {missing[:8]}, unexpected {unexpected[:8]}, "
            f"wrong shapes {bad_shapes[:8]}, wrong dtype kind {bad_kinds[:8]}")
    with torch.no_grad():
        for name, tensor in state.items():
            own[name].copy_(tensor)


def _tied_names(module: nn.Module) -> set[str]:
    cfg = getattr(module, "config", None)
    return {"lm_head.weight"} if cfg is not None and getattr(cfg, "tie_word_embeddings", False) else set()
