"""Load a Hugging Face format model directory (config.json, safetensors, tokenizer) into a Decoder."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from rollspec.engine.eagle_head import EagleHead
from rollspec.engine.errors import ModelDirectoryError, TokenizerMismatchError
from rollspec.engine.model import Decoder, Rotary
from rollspec.engine.model_config import ModelConfig
from rollspec.engine.mtp_head import MTPHeads
from rollspec.engine.weights import hf_to_native, load_native

EXTRA_PREFIXES = ("mtp.",)  # weights stored with the policy that the decoder itself does not use


@dataclasses.dataclass(frozen=True, slots=True)
class LoadedModel:
    """A decoder plus what else its directory held: extra weights (MTP heads) and the tokenizer vocab."""

    model: Decoder
    config: ModelConfig
    extra_weights: dict[str, torch.Tensor]
    vocab: dict[str, int] | None
    path: Path


def read_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_dir():
        raise ModelDirectoryError(f"model directory {str(path)!r} does not exist or is not a directory")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelDirectoryError(f"{str(path)!r} has no config.json; expected a Hugging Face format model directory")
    try:
        return json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise ModelDirectoryError(f"{config_file} is not valid JSON: {exc}") from exc


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of model.safetensors, or of the shards listed in model.safetensors.index.json."""
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError) as exc:
            raise ModelDirectoryError(f"{index} is malformed: {exc}") from exc
    elif (path / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise ModelDirectoryError(f"{str(path)!r} has no model.safetensors (or index); expected safetensors weights")
    tensors: dict[str, torch.Tensor] = {}
    for name in files:
        try:
            with safe_open(str(path / name), framework="pt") as handle:
                for key in handle.keys():
                    tensors[key] = handle.get_tensor(key)
        except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
            raise ModelDirectoryError(f"cannot read weights {path / name}: {exc}") from exc
    return tensors


def read_vocab(path: Path) -> dict[str, int] | None:
    tokenizer_file = path / "tokenizer.json"
    if not tokenizer_file.is_file():
        return None
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(tokenizer_file)).get_vocab(with_added_tokens=True)
    except Exception as exc:  # the tokenizers library raises a bare Exception subclass on bad JSON
        raise ModelDirectoryError(f"cannot read tokenizer {tokenizer_file}: {exc}") from exc


def load_model(path: str | Path, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
               max_positions: int | None = None) -> LoadedModel:
    """Build a Decoder from a model directory; every problem is a ModelDirectoryError or
    UnsupportedArchitectureError naming the file and what was expected."""
    path = Path(path)
    raw = read_config(path)
    cfg = ModelConfig.from_hf_dict(raw)
    if max_positions is not None:
        cfg = dataclasses.replace(cfg, max_position_embeddings=max(max_positions, cfg.max_position_embeddings))
    tensors = read_safetensors(path)
    extra = {k: v for k, v in tensors.items() if k.startswith(EXTRA_PREFIXES)}
    decoder_state = {k: v for k, v in tensors.items() if not k.startswith(EXTRA_PREFIXES)}
    with torch.device("meta"):
        model = Decoder(cfg)
    model = model.to_empty(device=device).to(dtype)
    model.tie_weights()
    # Buffers computed in __init__ were left empty on the meta device: recompute them.
    model.rotary = Rotary(cfg.head_dim, cfg.rope_theta, cfg.max_position_embeddings).to(device)
    try:
        load_native(model, hf_to_native(decoder_state, cfg))
    except Exception as exc:
        raise ModelDirectoryError(f"weights in {str(path)!r} do not match its config.json: {exc}") from exc
    model.eval().requires_grad_(False)
    return LoadedModel(model, cfg, extra, read_vocab(path), path)


def check_same_tokenizer(policy: LoadedModel, draft: LoadedModel) -> None:
    """A draft must share the policy's tokenizer, or its token ids mean something else."""
    if policy.config.vocab_size != draft.config.vocab_size:
        raise TokenizerMismatchError(
            f"draft {draft.path} has vocab_size {draft.config.vocab_size}, policy {policy.path} has "
            f"{policy.config.vocab_size}; a draft must share the policy's tokenizer")
    if policy.vocab is not None and draft.vocab is not None and policy.vocab != draft.vocab:
        differing = sorted(set(policy.vocab.items()) ^ set(draft.vocab.items()))[:5]
        raise TokenizerMismatchError(
            f"draft {draft.path} and policy {policy.path} have different tokenizers (e.g. {differing})")


def load_eagle_head(path: str | Path, policy: LoadedModel, *, dtype: torch.dtype = torch.float32,
                    device: str | torch.device = "cpu") -> EagleHead:
    """An EAGLE head directory: config.json (one Llama layer at the policy's hidden size) and
    safetensors under `fc.weight` / `layers.0.*`; it must share the policy's tokenizer."""
    path = Path(path)
    cfg = ModelConfig.from_hf_dict(read_config(path))
    if cfg.hidden_size != policy.config.hidden_size or cfg.vocab_size != policy.config.vocab_size:
        raise TokenizerMismatchError(
            f"EAGLE head {path} (hidden {cfg.hidden_size}, vocab {cfg.vocab_size}) does not fit policy "
            f"{policy.path} (hidden {policy.config.hidden_size}, vocab {policy.config.vocab_size})")
    vocab = read_vocab(path)
    if vocab is not None and policy.vocab is not None and vocab != policy.vocab:
        raise TokenizerMismatchError(f"EAGLE head {path} and policy {policy.path} have different tokenizers")
    head = EagleHead(cfg).to(device=device, dtype=dtype)
    tensors = {f"model.{name}": t for name, t in read_safetensors(path).items()}
    try:
        load_native(head, hf_to_native(tensors, cfg))
    except Exception as exc:
        raise ModelDirectoryError(f"EAGLE weights in {str(path)!r} do not match its config.json: {exc}") from exc
    return head.eval().requires_grad_(False)


def load_mtp_heads(policy: LoadedModel) -> MTPHeads:
    """The MTP heads stored in the policy checkpoint (see mtp_head.py for the layout)."""
    if policy.config.num_mtp_layers < 1:
        raise ModelDirectoryError(f"policy {policy.path} has no MTP heads (config.json lacks "
                                  f"num_nextn_predict_layers)")
    param = policy.model.embed_tokens.weight
    heads = MTPHeads(policy.config).to(device=param.device, dtype=param.dtype)
    try:
        heads.load_checkpoint_weights(policy.extra_weights)
    except Exception as exc:
        raise ModelDirectoryError(f"MTP weights in {policy.path} do not match num_nextn_predict_layers="
                                  f"{policy.config.num_mtp_layers}: {exc}") from exc
    return heads.eval().requires_grad_(False)
