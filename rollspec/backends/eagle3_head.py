"""An EAGLE-3 head directory in the layout vLLM loads (`Eagle3LlamaForCausalLM`), with seeded
random weights: the vLLM backend's EAGLE-3 path is tested with it. Our own engine has no EAGLE-3
drafter and the model zoo trains no EAGLE-3 head, so there is no trained one to benchmark.

Layout: config.json of a one-layer Llama at the policy's hidden size with
`eagle_config.eagle_aux_hidden_state_layer_ids` (the policy layers whose outputs it reads);
`fc.weight` [D, 3D] fuses those three hidden states; `layers.0` attends over
concat(input_layernorm(embed), hidden_norm(fused)) so q/k/v take 2D inputs; then `norm` and the
head's own `lm_head`. Embeddings are the policy's (absent from the file).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from rollspec.engine.model_config import ModelConfig
from rollspec.models.hf_dir import config_to_hf_dict


def eagle3_shapes(cfg: ModelConfig, num_aux: int = 3) -> dict[str, tuple[int, ...]]:
    """Every tensor of the head and its shape."""
    d, q, kv, i = cfg.hidden_size, cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim, cfg.intermediate_size
    layer = {"self_attn.q_proj.weight": (q, 2 * d), "self_attn.k_proj.weight": (kv, 2 * d),
             "self_attn.v_proj.weight": (kv, 2 * d), "self_attn.o_proj.weight": (d, q),
             "mlp.gate_proj.weight": (i, d), "mlp.up_proj.weight": (i, d), "mlp.down_proj.weight": (d, i),
             "input_layernorm.weight": (d,), "hidden_norm.weight": (d,), "post_attention_layernorm.weight": (d,)}
    return {"fc.weight": (d, num_aux * d), "norm.weight": (d,), "lm_head.weight": (cfg.vocab_size, d),
            **{f"layers.0.{name}": shape for name, shape in layer.items()}}


def random_eagle3_weights(cfg: ModelConfig, *, seed: int, std: float = 0.02) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in eagle3_shapes(cfg).items():
        noise = torch.randn(shape, generator=generator)
        out[name] = 1.0 + 0.1 * noise if name.endswith("norm.weight") else std * noise
    return out


def write_eagle3_dir(path: str | Path, policy: ModelConfig, *, aux_layer_ids: tuple[int, ...], seed: int,
                     std: float = 0.02) -> Path:
    """Write a seeded random EAGLE-3 head for `policy` reading the outputs of `aux_layer_ids`."""
    if len(aux_layer_ids) != 3 or not all(0 <= i < policy.num_layers for i in aux_layer_ids):
        raise ValueError(f"EAGLE-3 reads three policy layers in [0, {policy.num_layers}), got {aux_layer_ids}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_file(random_eagle3_weights(policy, seed=seed, std=std), str(path / "model.safetensors"))
    raw = config_to_hf_dict(policy)
    raw.update(architectures=["LlamaForCausalLM"], model_type="llama", num_hidden_layers=1,
               eagle_config={"eagle_aux_hidden_state_layer_ids": list(aux_layer_ids), "use_aux_hidden_state": True})
    raw.pop("num_nextn_predict_layers", None)
    (path / "config.json").write_text(json.dumps(raw, indent=2) + "\n")
    return path
