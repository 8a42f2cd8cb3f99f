"""kill -9 a checkpoint writer at random moments, resume from what `latest()` picks, and check that
what it picked is whole. Shared by the tests and bench/security.py."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import checkpoint_writer as cw  # noqa: E402

from rollspec.actors.checkpoints import (  # noqa: E402
    COMPLETE_MARKER,
    LEARNER_TAG,
    CheckpointNotFoundError,
    CheckpointStore,
)

WRITER = Path(__file__).with_name("checkpoint_writer.py")


def load(root: Path) -> tuple[int | None, bool]:
    """What a resume would load: (step or None, whether every byte of it belongs to that step)."""
    store = CheckpointStore(root, keep_last=2)
    try:
        step, state = store.latest()
    except CheckpointNotFoundError:
        return None, True
    learner = store.learner_dir(step) / LEARNER_TAG
    files = sorted(learner.iterdir()) if learner.is_dir() else []
    whole = (state == {"step": step, "files": cw.FILES} and len(files) == cw.FILES
             and all(f.read_bytes() == cw.content(step, i) for i, f in enumerate(files)))
    return step, whole


def kill_trials(root: Path, seed: int, kills: int, max_delay_s: float = 0.8, *, min_landed: int = 0,
                max_kills: int | None = None) -> dict:
    """Start the writer (from the step after the last good one), SIGKILL it after a random delay,
    load, repeat. Counts kills that landed mid-save (a step directory without its marker left).
    With `min_landed`, keeps going past `kills` (up to `max_kills`) until that many kills landed
    mid-save and that many loads happened: under load the writer starts late and fewer land."""
    rng = random.Random(seed)
    out = {"kills": 0, "mid_save": 0, "loads": 0, "partial_loads": 0, "steps": []}
    step = None
    limit = max(kills, max_kills or kills)
    while out["kills"] < kills or (out["kills"] < limit and min(out["mid_save"], out["loads"]) < min_landed):
        proc = subprocess.Popen([sys.executable, str(WRITER), str(root), str((step or 0) + 1)],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.0, max_delay_s))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        out["kills"] += 1
        out["mid_save"] += any(p.name.startswith("step_") and not (p / COMPLETE_MARKER).exists()
                               for p in root.iterdir()) if root.is_dir() else 0
        step, whole = load(root)
        if step is not None:
            out["loads"] += 1
            out["partial_loads"] += int(not whole)
            out["steps"].append(step)
    return out
