"""Write a Decoder (plus optional extra weights and tokenizer) as a Hugging Face format directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from rollspec.engine.eagle_head import EagleHead
from rollspec.engine.model import Decoder
from rollspec.engine.model_config import ModelConfig
from rollspec.engine.weights import native_to_hf

EAGLE_ARCHITECTURE = "EagleLlamaForCausalLM"
_ARCHITECTURES = {"qwen3": "Qwen3ForCausalLM", "llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def config_to_hf_dict(cfg: ModelConfig, dtype: torch.dtype = torch.float32) -> dict:
    """The config.json transformers (and vLLM) read for this architecture."""
    raw = {
        "architectures": [_ARCHITECTURES[cfg.model_type]],
        "model_type": cfg.model_type,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_theta": cfg.rope_theta, "rope_type": "default"},
        "max_position_embeddings": cfg.max_position_embeddings,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "torch_dtype": str(dtype).removeprefix("torch."),
    }
    if cfg.model_type != "qwen2":
        raw["attention_bias"] = cfg.qkv_bias
    if cfg.eos_token_ids:
        raw["eos_token_id"] = list(cfg.eos_token_ids) if len(cfg.eos_token_ids) > 1 else cfg.eos_token_ids[0]
    if cfg.num_mtp_layers:
        raw["num_nextn_predict_layers"] = cfg.num_mtp_layers
    return raw


def write_model_dir(path: str | Path, model: Decoder, *, extra_weights: dict[str, torch.Tensor] | None = None,
                    tokenizer_dir: str | Path | None = None, config: ModelConfig | None = None) -> Path:
    """Save weights as model.safetensors under Hugging Face names, config.json, and copy the
    tokenizer files. `config` overrides model.config (e.g. to record num_mtp_layers)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = config or model.config
    state = {name: t.detach().contiguous().clone() for name, t in native_to_hf(model).items()}
    for name, tensor in (extra_weights or {}).items():
        state[name] = tensor.detach().contiguous().clone()
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    dtype = model.embed_tokens.weight.dtype
    (path / "config.json").write_text(json.dumps(config_to_hf_dict(cfg, dtype), indent=2) + "\n")
    _copy_tokenizer(tokenizer_dir, path)
    return path


def write_eagle_dir(path: str | Path, head: EagleHead, *, tokenizer_dir: str | Path | None = None) -> Path:
    """Save an EAGLE head the way EAGLE checkpoints lay it out: config.json (one Llama layer at the
    policy's hidden size, architecture EagleLlamaForCausalLM) and safetensors under `fc.weight`
    and `layers.0.*`; embeddings and LM head stay the policy's."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {name.removeprefix("model."): t.detach().contiguous().clone() for name, t in native_to_hf(head).items()}
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    raw = config_to_hf_dict(head.config, head.fc.weight.dtype)
    raw["architectures"] = [EAGLE_ARCHITECTURE]
    (path / "config.json").write_text(json.dumps(raw, indent=2) + "\n")
    _copy_tokenizer(tokenizer_dir, path)
    return path


def _copy_tokenizer(tokenizer_dir: str | Path | None, path: Path) -> None:
    if tokenizer_dir is not None:
        for name in TOKENIZER_FILES:
            if (Path(tokenizer_dir) / name).is_file():
                shutil.copyfile(Path(tokenizer_dir) / name, path / name)
