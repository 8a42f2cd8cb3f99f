"""What a weight update must look like, read from the model directory an engine started from, and
the staging file that carries an accepted update to vLLM's worker process.

vLLM's loaders fail part-way through on an unknown name (after copying earlier tensors) and only
warn about missing ones, so an update is checked here completely, before any tensor reaches the
engine: a rejected update leaves the engine serving the last good version.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from rollspec.engine.errors import ModelDirectoryError, WeightUpdateError


@dataclasses.dataclass(frozen=True, slots=True)
class WeightManifest:
    """Name -> (shape, is floating point) of every tensor an update must carry."""

    what: str
    shapes: dict[str, tuple[tuple[int, ...], bool]]

    @classmethod
    def from_dir(cls, path: str | Path, what: str, *, skip_prefixes: tuple[str, ...] = ()) -> WeightManifest:
        """Read names and shapes from the safetensors headers of a model directory (no tensor data)."""
        path = Path(path)
        index = path / "model.safetensors.index.json"
        if index.is_file():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        elif (path / "model.safetensors").is_file():
            files = ["model.safetensors"]
        else:
            raise ModelDirectoryError(f"{str(path)!r} has no model.safetensors (or index); expected safetensors weights")
        shapes = {}
        for name in files:
            with safe_open(str(path / name), framework="pt") as handle:
                for key in handle.keys():
                    if key.startswith(skip_prefixes):
                        continue
                    piece = handle.get_slice(key)
                    shapes[key] = (tuple(piece.get_shape()), piece.get_dtype().startswith(("F", "BF")))
        return cls(what, shapes)

    def check(self, weights: dict[str, torch.Tensor], version: int) -> None:
        """Raise WeightUpdateError naming every missing, unexpected or misshapen tensor."""
        missing = sorted(set(self.shapes) - set(weights))
        unexpected = sorted(set(weights) - set(self.shapes))
        bad_shapes = [f"{n}: {tuple(t.shape)} != {self.shapes[n][0]}" for n, t in weights.items()
                      if n in self.shapes and tuple(t.shape) != self.shapes[n][0]]
        bad_kinds = [n for n, t in weights.items() if n in self.shapes and t.is_floating_point() != self.shapes[n][1]]
        if missing or unexpected or bad_shapes or bad_kinds:
            raise WeightUpdateError(
                f"{self.what} version {version} rejected: missing {missing[:8]}, unexpected {unexpected[:8]}, "
                f"wrong shapes {bad_shapes[:8]}, wrong dtype kind {bad_kinds[:8]}")


def stage_weights(weights: dict[str, torch.Tensor], directory: str | Path, dtype: torch.dtype) -> Path:
    """Write `weights` (cast to the engine's dtype) to a new safetensors file in `directory`,
    renamed into place so the worker never reads a half-written file."""
    directory = Path(directory)
    state = {name: t.detach().to(dtype=dtype, device="cpu").contiguous() for name, t in weights.items()}
    fd, tmp = tempfile.mkstemp(suffix=".tmp", dir=directory)
    os.close(fd)
    save_file(state, tmp)
    final = Path(tmp).with_suffix(".safetensors")
    os.replace(tmp, final)
    return final


def staging_root() -> str:
    """Shared memory when the machine has it (no disk round trip), else the temp directory."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


def decoder_only_dir(path: str | Path, staging: str | Path, skip_prefixes: tuple[str, ...]) -> Path:
    """`path` itself, or, when its weights hold tensors under `skip_prefixes` (our MTP heads, which
    vLLM's decoder classes refuse to load), a copy in `staging` without them: same config (less
    `num_nextn_predict_layers`), same tokenizer files, decoder tensors only."""
    from rollspec.engine.loader import read_safetensors

    path = Path(path)
    tensors = read_safetensors(path)
    if not any(name.startswith(skip_prefixes) for name in tensors):
        return path
    view = Path(staging) / "policy"
    view.mkdir(parents=True, exist_ok=True)
    save_file({n: t.contiguous() for n, t in tensors.items() if not n.startswith(skip_prefixes)},
              str(view / "model.safetensors"), metadata={"format": "pt"})
    raw = json.loads((path / "config.json").read_text())
    raw.pop("num_nextn_predict_layers", None)
    (view / "config.json").write_text(json.dumps(raw, indent=2) + "\n")
    for extra in path.iterdir():
        if extra.is_file() and extra.suffix != ".safetensors" and extra.name not in ("config.json",
                                                                                      "model.safetensors.index.json"):
            (view / extra.name).write_bytes(extra.read_bytes())
    return view
