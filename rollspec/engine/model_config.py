"""Architecture description of a Llama / Qwen2 / Qwen3 decoder, parsed from a Hugging Face config.json."""

from __future__ import annotations

import dataclasses
from typing import Any

from rollspec.engine.errors import ModelDirectoryError, UnsupportedArchitectureError

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "qwen3")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ModelConfig:
    """Everything the decoder needs to allocate and run; immutable after parsing."""

    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    qk_norm: bool  # Qwen3 normalizes q and k per head before RoPE
    qkv_bias: bool  # Qwen2 has biases on q, k, v
    o_bias: bool  # Llama with attention_bias=True also biases o_proj
    num_mtp_layers: int = 0  # MTP heads stored with the checkpoint (see mtp_head.py)
    eos_token_ids: tuple[int, ...] = ()

    @classmethod
    def from_hf_dict(cls, raw: dict[str, Any]) -> ModelConfig:
        """Validate a config.json dict; raise a named error for anything we cannot run exactly."""
        model_type = raw.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise UnsupportedArchitectureError(
                f"model_type {model_type!r} is not supported; expected one of {SUPPORTED_MODEL_TYPES}"
            )
        _require(raw, "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
        if raw.get("hidden_act", "silu") != "silu":
            raise UnsupportedArchitectureError(f"hidden_act {raw['hidden_act']!r} is not supported; expected 'silu'")
        if raw.get("use_sliding_window"):
            raise UnsupportedArchitectureError("sliding-window attention is not supported (use_sliding_window=true)")
        if raw.get("mlp_bias"):
            raise UnsupportedArchitectureError("mlp_bias=true is not supported")
        rope = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type != "default":
            raise UnsupportedArchitectureError(f"rope type {rope_type!r} is not supported; expected 'default'")
        num_heads = int(raw["num_attention_heads"])
        num_kv_heads = int(raw.get("num_key_value_heads") or num_heads)
        if num_heads % num_kv_heads:
            raise ModelDirectoryError(f"num_attention_heads {num_heads} is not a multiple of num_key_value_heads "
                                      f"{num_kv_heads}")
        attention_bias = bool(raw.get("attention_bias", False))
        eos = raw.get("eos_token_id")
        eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (int(eos),))
        return cls(
            model_type=model_type,
            vocab_size=int(raw["vocab_size"]),
            hidden_size=int(raw["hidden_size"]),
            intermediate_size=int(raw["intermediate_size"]),
            num_layers=int(raw["num_hidden_layers"]),
            num_heads=num_heads,
            num_kv_heads=num_kv_heads,
            head_dim=int(raw.get("head_dim") or int(raw["hidden_size"]) // num_heads),
            rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
            rope_theta=float(rope.get("rope_theta", raw.get("rope_theta", 10000.0))),
            max_position_embeddings=int(raw.get("max_position_embeddings", 2048)),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
            qk_norm=model_type == "qwen3",
            qkv_bias=model_type == "qwen2" or attention_bias,
            o_bias=model_type != "qwen2" and attention_bias,
            num_mtp_layers=int(raw.get("num_nextn_predict_layers", 0)),
            eos_token_ids=eos_ids,
        )


def _require(raw: dict[str, Any], *keys: str) -> None:
    missing = [k for k in keys if k not in raw]
    if missing:
        raise ModelDirectoryError(f"config.json lacks required keys {missing}")
