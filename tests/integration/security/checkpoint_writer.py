"""Saves checkpoints through the real CheckpointStore in a loop until killed; the kill -9 tests run it.

    python checkpoint_writer.py ROOT FIRST_STEP

Each step writes a fake learner checkpoint (a few MB in several files, each written in pieces like
DeepSpeed does) and then completes it. Every byte is a function of (step, file), so a loader can
tell a whole checkpoint from a mix of two steps or a torn file. Imports only the store (fast start).
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from rollspec.actors.checkpoints import LEARNER_TAG, CheckpointStore  # noqa: E402

FILES = 4
PIECES = 8
PIECE_BYTES = 256 << 10


def content(step: int, index: int) -> bytes:
    """The bytes of file `index` at `step`."""
    return bytes([(step * 31 + index * 7) % 251]) * (PIECES * PIECE_BYTES)


def save(store: CheckpointStore, step: int) -> None:
    """One checkpoint save, the way the controller does it."""
    with store.writing(step):
        learner = store.learner_dir(step) / LEARNER_TAG
        learner.mkdir(parents=True)
        for index in range(FILES):
            data = content(step, index)
            with open(learner / f"part{index}.pt", "wb") as handle:
                for piece in range(PIECES):  # flushed piece by piece: a kill finds torn files on disk
                    handle.write(data[piece * PIECE_BYTES:(piece + 1) * PIECE_BYTES])
                    handle.flush()
                    os.fsync(handle.fileno())
        store.complete(step, {"step": step, "files": FILES})


def main() -> None:
    root, step = Path(sys.argv[1]), int(sys.argv[2])
    store = CheckpointStore(root, keep_last=2)
    print("ready", flush=True)
    while True:
        save(store, step)
        step += 1


if __name__ == "__main__":
    main()
