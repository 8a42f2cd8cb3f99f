"""Checkpoint directories of a run: `<run>/checkpoints/step_<N>/{learner/, draft/, controller.json, COMPLETE}`.

A checkpoint counts only once its COMPLETE marker exists, and the marker is written last, after
the learner's DeepSpeed checkpoint (every rank), the latest published draft (draft refresh on), the
controller state (atomically: temp file, fsync, rename) and MANIFEST.json (size and SHA-256 of every
file, all fsynced first; the marker records the manifest's digest). A crash at any point leaves
either a complete checkpoint or one `--resume` ignores; `latest()` verifies the manifest and falls
back to the previous checkpoint when the newest is truncated, edited or incomplete. A full disk while saving is a CheckpointWriteError.
"""

import contextlib
import json
import logging
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rollspec.actors.checkpoint_manifest import (
    CheckpointCorruptError,
    CheckpointWriteError,
    is_disk_full,
    verify,
    write_bytes_atomic,
    write_manifest,
)
from rollspec.actors.draft_checkpoint import DRAFT_DIR

CONTROLLER_FILE = "controller.json"
COMPLETE_MARKER = "COMPLETE"
LEARNER_DIR = "learner"
LEARNER_TAG = "state"
_STEP_DIR = re.compile(r"^step_(\d+)$")
log = logging.getLogger(__name__)


class CheckpointNotFoundError(FileNotFoundError):
    """--resume found no complete checkpoint."""


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that `path` holds either the old content or all of the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())


class CheckpointStore:
    """The checkpoints under `root` (a run's `checkpoints/` directory)."""

    def __init__(self, root: str | Path, *, keep_last: int = 2):
        self.root = Path(root)
        self.keep_last = keep_last

    def step_dir(self, step: int) -> Path:
        """Directory of the checkpoint after `step` learner steps."""
        return self.root / f"step_{step:08d}"

    def learner_dir(self, step: int) -> Path:
        """Where the learner group writes its DeepSpeed checkpoint for `step`."""
        return self.step_dir(step) / LEARNER_DIR

    def draft_dir(self, step: int) -> Path:
        """Where the draft-refresh actor writes the draft it last published (draft_checkpoint.py)."""
        return self.step_dir(step) / DRAFT_DIR

    @contextlib.contextmanager
    def writing(self, step: int) -> Iterator[Path]:
        """Scope of one save: starts from an empty step directory (a stale partial one is removed) and,
        if the save fails, removes what it wrote; a full disk becomes a CheckpointWriteError naming it."""
        directory = self.step_dir(step)
        shutil.rmtree(directory, ignore_errors=True)
        try:
            directory.mkdir(parents=True)
            yield directory
        except BaseException as exc:
            shutil.rmtree(directory, ignore_errors=True)
            if is_disk_full(exc):
                free = shutil.disk_usage(self.root).free if self.root.is_dir() else 0
                previous = self.complete_steps()
                raise CheckpointWriteError(
                    f"disk full while writing checkpoint step {step} under {self.root} ({free} bytes free); "
                    f"the partial checkpoint was removed; last complete: "
                    f"{self.step_dir(previous[-1]) if previous else 'none'}") from exc
            raise

    def complete(self, step: int, controller_state: dict[str, Any]) -> Path:
        """Write the controller state, the manifest and the marker (the learner part must already be
        written); prune. A full disk is reported as CheckpointWriteError (see `writing`)."""
        directory = self.step_dir(step)
        try:
            write_json_atomic(directory / CONTROLLER_FILE, controller_state)
            digest = write_manifest(directory, skip=(COMPLETE_MARKER,))
            write_json_atomic(directory / COMPLETE_MARKER, {"step": step, "manifest_sha256": digest})
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            shutil.rmtree(directory, ignore_errors=True)
            raise CheckpointWriteError(f"disk full while completing checkpoint step {step} in {directory}; "
                                       "the partial checkpoint was removed") from exc
        self._prune()
        return directory

    def complete_steps(self) -> list[int]:
        """Steps with a complete checkpoint, ascending."""
        if not self.root.is_dir():
            return []
        steps = []
        for child in self.root.iterdir():
            match = _STEP_DIR.match(child.name)
            if match and (child / COMPLETE_MARKER).is_file() and (child / CONTROLLER_FILE).is_file():
                steps.append(int(match.group(1)))
        return sorted(steps)

    def verify(self, step: int) -> None:
        """Raise CheckpointCorruptError unless checkpoint `step` matches its manifest and marker."""
        directory = self.step_dir(step)
        try:
            marker = json.loads((directory / COMPLETE_MARKER).read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointCorruptError(f"{directory}: unreadable {COMPLETE_MARKER} marker ({exc!r})") from None
        if not isinstance(marker, dict) or not isinstance(marker.get("manifest_sha256", ""), str):
            raise CheckpointCorruptError(f"{directory}: malformed {COMPLETE_MARKER} marker {marker!r}")
        if "manifest_sha256" not in marker:  # written before manifests existed: complete, but unverifiable
            log.warning("checkpoint %s has no manifest (older rollspec): loading it unverified", directory)
            return
        verify(directory, marker["manifest_sha256"], skip=(COMPLETE_MARKER,))

    def latest(self) -> tuple[int, dict[str, Any]]:
        """(step, controller state) of the newest complete checkpoint that verifies; damaged newer ones
        are skipped with a warning. CheckpointNotFoundError if none is left."""
        steps = self.complete_steps()
        skipped = []
        for step in reversed(steps):
            try:
                self.verify(step)
                state = json.loads((self.step_dir(step) / CONTROLLER_FILE).read_text())
            except (CheckpointCorruptError, ValueError) as exc:
                log.warning("checkpoint %s is damaged, not loading it: %s", self.step_dir(step), exc)
                skipped.append(f"{self.step_dir(step).name}: {exc}")
                continue
            return step, state
        raise CheckpointNotFoundError(f"no complete checkpoint under {self.root} (a checkpoint is complete once its "
                                      f"{COMPLETE_MARKER} file exists and its files match its manifest)"
                                      + (f"; damaged: {skipped}" if skipped else ""))

    def _prune(self) -> None:
        steps = self.complete_steps()
        for step in steps[: -self.keep_last]:
            shutil.rmtree(self.step_dir(step), ignore_errors=True)
