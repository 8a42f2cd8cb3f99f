"""A policy padded with layers that compute but add nothing: the same function (same logits, so the
same acceptance for every drafter) at the cost per token of a larger model.

Why: the zoo's policy (1.7M parameters) is small enough that its weights sit in the CPU's cache and a
decode step costs little more than its Python; speculative decoding pays when a decode step is bound
by streaming the weights, as for real policies. Training a 25M-parameter policy (DESIGN.md's CPU
reference size) does not fit the zoo's 10-minute budget; padding the trained one gives that cost with
the trained policy's and drafters' behaviour. Each extra layer has the trained layers' shapes, random
q/k/v and gate/up weights (real arithmetic, real cache traffic) and zero o_proj and down_proj, so both
residual branches add exactly zero.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

ZERO = ("self_attn.o_proj.weight", "mlp.down_proj.weight")


def pad_policy(src: str | Path, dst: str | Path, *, extra_layers: int, seed: int = 0) -> Path:
    """Writes to `dst` the HF-format policy at `src` with `extra_layers` compute-only layers after its
    own (MTP heads dropped: they are not what is measured). Returns dst."""
    src, dst = Path(src), Path(dst)
    if extra_layers < 1:
        raise ValueError(f"extra_layers must be >= 1, got {extra_layers}")
    config = json.loads((src / "config.json").read_text())
    weights = {name: t for name, t in load_file(src / "model.safetensors").items() if not name.startswith("mtp.")}
    prefix, first = "model.layers.", config["num_hidden_layers"]
    template = {name[len(prefix) + 2:]: t for name, t in weights.items() if name.startswith(prefix + "0.")}
    if not template:
        raise ValueError(f"{src} has no {prefix}0.* weights to copy the layer shapes from")
    generator = torch.Generator().manual_seed(seed)
    for layer in range(first, first + extra_layers):
        for name, t in template.items():
            if name.endswith(ZERO):
                new = torch.zeros_like(t)
            elif "norm" in name or name.endswith(".bias"):
                new = torch.ones_like(t) if "norm" in name else torch.zeros_like(t)
            else:
                new = torch.randn(t.shape, generator=generator, dtype=t.dtype) * 0.05
            weights[f"{prefix}{layer}.{name}"] = new
    config.update(num_hidden_layers=first + extra_layers, num_nextn_predict_layers=0)
    dst.mkdir(parents=True, exist_ok=True)
    save_file({name: t.contiguous() for name, t in weights.items()}, dst / "model.safetensors")
    (dst / "config.json").write_text(json.dumps(config, indent=2))
    for path in src.iterdir():
        if path.is_file() and path.name not in ("config.json", "model.safetensors"):
            shutil.copy(path, dst / path.name)
    return dst
