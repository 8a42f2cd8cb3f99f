"""Build the drafter a config names, from model directories on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from rollspec.engine.config import EngineConfig
from rollspec.engine.drafters.base import Drafter
from rollspec.engine.drafters.draft_model import DraftModelDrafter
from rollspec.engine.drafters.eagle import EagleDrafter
from rollspec.engine.drafters.mtp import MTPDrafter
from rollspec.engine.drafters.ngram import NgramDrafter
from rollspec.engine.errors import ModelDirectoryError
from rollspec.engine.loader import LoadedModel, check_same_tokenizer, load_eagle_head, load_model, load_mtp_heads

DrafterKind = Literal["none", "draft_model", "eagle", "mtp", "ngram"]
DRAFTER_KINDS: tuple[str, ...] = ("none", "draft_model", "eagle", "mtp", "ngram")


def build_drafter(kind: DrafterKind, *, policy: LoadedModel, config: EngineConfig, draft_path: str | Path | None = None,
                  ngram_min: int = 2, ngram_max: int = 5) -> Drafter | None:
    """`draft_path` is the draft model directory (draft_model) or the EAGLE head directory (eagle)."""
    if kind == "none":
        return None
    if kind == "ngram":
        return NgramDrafter(num_slots=config.max_batch_size, min_n=ngram_min, max_n=ngram_max)
    if kind == "mtp":
        return MTPDrafter(load_mtp_heads(policy), policy.model)
    if kind not in ("draft_model", "eagle"):
        raise ValueError(f"unknown drafter {kind!r}; expected one of {DRAFTER_KINDS}")
    if draft_path is None:
        raise ModelDirectoryError(f"drafter {kind!r} needs a model directory (draft_path)")
    dtype, device = config.torch_dtype, config.torch_device
    if kind == "draft_model":
        draft = load_model(draft_path, dtype=dtype, device=device)
        check_same_tokenizer(policy, draft)
        return DraftModelDrafter(draft.model, num_slots=config.max_batch_size, max_len=config.cache_len)
    head = load_eagle_head(draft_path, policy, dtype=dtype, device=device)
    return EagleDrafter(head, policy.model, num_slots=config.max_batch_size, max_len=config.cache_len)
