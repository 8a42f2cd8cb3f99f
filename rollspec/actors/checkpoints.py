"""Checkpoint directories of a run: `<run>/checkpoints/step_<N>/{learner/, controller.json, COMPLETE}`.

A checkpoint counts only once its COMPLETE marker exists, and the marker is written last, after
the learner's DeepSpeed checkpoint (every rank) and the controller state (atomically: temp file,
fsync, rename). A crash at any point leaves either a complete checkpoint or one `--resume` ignores.
"""

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

CONTROLLER_FILE = "controller.json"
COMPLETE_MARKER = "COMPLETE"
LEARNER_DIR = "learner"
LEARNER_TAG = "state"
_STEP_DIR = re.compile(r"^step_(\d+)$")


class CheckpointNotFoundError(FileNotFoundError):
    """--resume found no complete checkpoint."""


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that `path` holds either the old content or all of the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself is durable only once the directory is synced
    finally:
        os.close(dir_fd)


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

    def complete(self, step: int, controller_state: dict[str, Any]) -> Path:
        """Write the controller state and the marker (the learner part must already be written); prune."""
        directory = self.step_dir(step)
        write_json_atomic(directory / CONTROLLER_FILE, controller_state)
        write_json_atomic(directory / COMPLETE_MARKER, {"step": step})
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

    def latest(self) -> tuple[int, dict[str, Any]]:
        """(step, controller state) of the newest complete checkpoint; CheckpointNotFoundError if none."""
        steps = self.complete_steps()
        if not steps:
            raise CheckpointNotFoundError(f"no complete checkpoint under {self.root} (a checkpoint is complete "
                                          f"once its {COMPLETE_MARKER} file exists)")
        step = steps[-1]
        return step, json.loads((self.step_dir(step) / CONTROLLER_FILE).read_text())

    def _prune(self) -> None:
        steps = self.complete_steps()
        for step in steps[: -self.keep_last]:
            shutil.rmtree(self.step_dir(step), ignore_errors=True)
