"""The draft part of a checkpoint: `<step dir>/draft/{weights.safetensors, draft.json}`.

The draft-refresh actor writes the latest draft version it published (weights under the names its
`Drafter.update` takes, and which drafter, version and policy version they belong to) into the step
directory while the controller saves a checkpoint; the checkpoint's manifest and COMPLETE marker
then cover these files like the learner's (checkpoints.py), so a draft is loaded only from a
checkpoint that verified. `--resume` hands the directory to the new draft-refresh actor, which
publishes these weights under their own version: rollouts go on from the refreshed drafter, not
from the one on disk. Beside them, `trainer.safetensors` / `trainer.json` keep what the distiller had
reached them with (AdamW moments, batch-sampling RNG) and the trajectories it held to train on, so a
resumed refresh neither restarts its moments from zero nor waits for a new buffer to fill.
"""

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from rollspec.models.distiller_state import (
    DistillerStateError,
    TrainerState,
    buffer_from_json,
    buffer_to_json,
    rng_state_from_json,
    rng_state_to_json,
)
from rollspec.models.token_batch import TokenSequence

DRAFT_DIR = "draft"
WEIGHTS_FILE = "weights.safetensors"
META_FILE = "draft.json"
TRAINER_WEIGHTS_FILE = "trainer.safetensors"
TRAINER_META_FILE = "trainer.json"
TRAINER_FORMAT = 1
Weights = dict[str, torch.Tensor]


class DraftCheckpointError(RuntimeError):
    """A checkpoint's draft files are unreadable or do not describe a draft."""


@dataclasses.dataclass(frozen=True, slots=True)
class SavedDraft:
    """What a checkpoint's draft directory says about its weights."""

    drafter: str
    draft_version: int
    policy_version: int
    """The policy version the draft-refresh actor had seen when it published these weights."""


def weights_digest(weights: Weights) -> str:
    """SHA-256 over names, dtypes, shapes and bytes: equal digests mean the same draft weights."""
    sha = hashlib.sha256()
    for name in sorted(weights):
        tensor = weights[name].detach().contiguous().cpu()
        sha.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        sha.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return sha.hexdigest()


def save_draft(directory: Path, saved: SavedDraft, weights: Weights, trainer: TrainerState | None = None,
               buffer: tuple[TokenSequence, ...] = ()) -> None:
    """Write the draft into `directory` (replacing one there), with the distiller's state when there is
    any. Durability and the all-or-nothing view come from the checkpoint's manifest and marker,
    written after this returns."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    _write_tensors(directory / WEIGHTS_FILE, weights)
    if trainer is not None or buffer:
        if trainer is not None:
            _write_tensors(directory / TRAINER_WEIGHTS_FILE, trainer.optimizer)
        meta = {"format": TRAINER_FORMAT, "buffer": buffer_to_json(buffer),
                "rng_state": None if trainer is None else rng_state_to_json(trainer.rng_state)}
        (directory / TRAINER_META_FILE).write_text(json.dumps(meta) + "\n")
    (directory / META_FILE).write_text(json.dumps(dataclasses.asdict(saved), sort_keys=True) + "\n")


def read_saved_draft(directory: Path) -> SavedDraft | None:
    """The draft directory's description (None if the checkpoint has no draft: refresh was off, or the
    checkpoint predates draft checkpoints); DraftCheckpointError if it is malformed."""
    path = directory / META_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        saved = SavedDraft(drafter=str(data["drafter"]), draft_version=int(data["draft_version"]),
                           policy_version=int(data["policy_version"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise DraftCheckpointError(f"{path}: malformed draft description ({exc!r})") from None
    if saved.draft_version < 0 or saved.policy_version < 0:
        raise DraftCheckpointError(f"{path}: negative version in {saved}")
    return saved


def load_draft(directory: Path, drafter: str | None = None) -> tuple[SavedDraft, Weights]:
    """The saved draft's description and weights; DraftCheckpointError if either is missing or unreadable,
    or if `drafter` is given and the draft is another drafter's."""
    saved = read_saved_draft(directory)
    if saved is None:
        raise DraftCheckpointError(f"{directory}: no {META_FILE}")
    if drafter is not None and saved.drafter != drafter:
        raise DraftCheckpointError(f"{directory}: a {saved.drafter} draft, this run drafts with {drafter}")
    return saved, _read_tensors(directory / WEIGHTS_FILE)


def load_trainer(directory: Path) -> tuple[TrainerState | None, list[TokenSequence]] | None:
    """The distiller's saved optimizer/RNG state (None if it had none) and buffered trajectories; None if the
    draft directory has no trainer files (refresh passed weights through, or an older checkpoint);
    DraftCheckpointError if they are unreadable or malformed."""
    meta_path = directory / TRAINER_META_FILE
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta, dict) or meta.get("format") != TRAINER_FORMAT:
            raise DistillerStateError(f"not a format-{TRAINER_FORMAT} trainer description")
        buffer = buffer_from_json(meta.get("buffer"))
        rng = meta.get("rng_state")
        if rng is None:
            return None, buffer
        rng_state = rng_state_from_json(rng)
    except ValueError as exc:  # bad JSON, or DistillerStateError (a ValueError)
        raise DraftCheckpointError(f"{meta_path}: malformed ({exc})") from None
    return TrainerState(_read_tensors(directory / TRAINER_WEIGHTS_FILE), rng_state), buffer


def _write_tensors(path: Path, tensors: Weights) -> None:
    save_file({name: t.detach().contiguous() for name, t in tensors.items()}, str(path), metadata={"format": "pt"})


def _read_tensors(path: Path) -> Weights:
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for a bad header or a short file
        raise DraftCheckpointError(f"{path}: unreadable ({exc!r})") from None
