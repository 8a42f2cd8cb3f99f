"""Checkpoints are written atomically with a manifest: a save killed at any point, a truncated or edited
file, or a full disk never yields a loaded half-checkpoint. `latest()` (what --resume loads) takes
the newest checkpoint that verifies and says which it skipped; a full disk is a clear error.
"""

import json
import logging
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import checkpoint_kills as ck  # noqa: E402
import checkpoint_writer as cw  # noqa: E402

from rollspec.actors.checkpoint_manifest import MANIFEST_FILE, CheckpointWriteError, is_disk_full  # noqa: E402
from rollspec.actors.checkpoints import (  # noqa: E402
    COMPLETE_MARKER,
    CONTROLLER_FILE,
    LEARNER_TAG,
    CheckpointNotFoundError,
    CheckpointStore,
    write_json_atomic,
)


def _saved(root: Path, steps: tuple[int, ...] = (1, 2)) -> CheckpointStore:
    store = CheckpointStore(root, keep_last=3)
    for step in steps:
        cw.save(store, step)
    return store


def _damage(store: CheckpointStore, step: int, how: str) -> None:
    directory = store.step_dir(step)
    part = store.learner_dir(step) / LEARNER_TAG / "part2.pt"
    if how == "truncated":
        part.write_bytes(part.read_bytes()[:-1000])
    elif how == "edited":  # same size, one byte changed
        data = bytearray(part.read_bytes())
        data[len(data) // 2] ^= 0x40
        part.write_bytes(bytes(data))
    elif how == "missing":
        part.unlink()
    elif how == "extra":
        (part.parent / "planted.pt").write_bytes(b"\0" * 100)
    elif how == "manifest_edited":  # a file edited and the manifest "fixed" to match: the marker disagrees
        part.write_bytes(b"\1" * part.stat().st_size)
        manifest = json.loads((directory / MANIFEST_FILE).read_text())
        manifest["files"][f"learner/{LEARNER_TAG}/part2.pt"]["sha256"] = "0" * 64
        (directory / MANIFEST_FILE).write_text(json.dumps(manifest))
    elif how == "controller_truncated":
        path = directory / CONTROLLER_FILE
        path.write_bytes(path.read_bytes()[:5])
    elif how == "marker_garbage":
        (directory / COMPLETE_MARKER).write_text("{not json")
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["truncated", "edited", "missing", "extra", "manifest_edited",
                                 "controller_truncated", "marker_garbage"])
def test_a_damaged_newest_checkpoint_is_skipped_for_the_last_good_one(tmp_path, how, caplog):
    store = _saved(tmp_path)
    _damage(store, 2, how)
    with caplog.at_level(logging.WARNING):
        step, whole = ck.load(tmp_path)
    assert (step, whole) == (1, True)
    assert "step_00000002 is damaged" in caplog.text


def test_resume_fails_clearly_when_no_checkpoint_verifies(tmp_path):
    store = _saved(tmp_path, steps=(1,))
    _damage(store, 1, "edited")
    with pytest.raises(CheckpointNotFoundError, match="damaged.*SHA-256 differs"):
        store.latest()


def test_a_checkpoint_from_before_manifests_still_loads(tmp_path):
    store = _saved(tmp_path, steps=(1,))
    (store.step_dir(1) / MANIFEST_FILE).unlink()
    write_json_atomic(store.step_dir(1) / COMPLETE_MARKER, {"step": 1})  # the old marker format
    assert ck.load(tmp_path) == (1, True)


def test_a_new_save_replaces_a_stale_partial_directory_of_the_same_step(tmp_path):
    store = _saved(tmp_path, steps=(1,))
    stale = store.learner_dir(2) / LEARNER_TAG
    stale.mkdir(parents=True)
    (stale / "from_a_crashed_attempt.pt").write_bytes(b"junk")
    cw.save(store, 2)
    assert ck.load(tmp_path) == (2, True)


def test_kill_9_during_saves_never_yields_a_partial_checkpoint(tmp_path):
    result = ck.kill_trials(tmp_path, seed=0, kills=6, min_landed=3, max_kills=30)
    assert result["mid_save"] >= 3 and result["loads"] >= 3, result  # the kills did land inside saves
    assert result["partial_loads"] == 0, result


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_kill_9_at_random_points_over_many_seeds(tmp_path, seed):
    result = ck.kill_trials(tmp_path, seed=seed, kills=20)
    print(f"seed {seed}: {result}")
    assert result["mid_save"] >= 10 and result["partial_loads"] == 0, result


# --- a full disk -------------------------------------------------------------------------------------
FULL_DISK = textwrap.dedent("""
    import json, subprocess, sys
    sys.path.insert(0, {here!r})
    import checkpoint_writer as cw
    from rollspec.actors.checkpoints import CheckpointStore
    from rollspec.actors.checkpoint_manifest import CheckpointWriteError
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", {disk!r}], check=True)
    try:
        store = CheckpointStore({disk!r}, keep_last=2)
        cw.save(store, 1)  # 8 MiB: fits
        try:
            cw.save(store, 2)  # another 8 MiB: does not
            error = None
        except CheckpointWriteError as exc:
            error = str(exc)
        print(json.dumps({{"error": error, "complete": store.complete_steps(), "latest": store.latest()[0],
                           "dirs": sorted(p.name for p in store.root.iterdir())}}))
    finally:
        subprocess.run(["umount", {disk!r}], check=False)
""")


def test_a_full_disk_during_save_is_a_clear_error_and_the_last_checkpoint_survives(tmp_path):
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount a small tmpfs in a private mount namespace")
    disk = tmp_path / "disk"
    disk.mkdir()
    script = FULL_DISK.format(here=str(Path(__file__).parent), disk=str(disk))
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", script],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 and ("Operation not permitted" in proc.stderr or "must be superuser" in proc.stderr):
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()[-200:]}")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["error"] is not None and "disk full while writing checkpoint step 2" in result["error"]
    assert "last complete:" in result["error"] and "step_00000001" in result["error"]
    assert result["complete"] == [1] and result["latest"] == 1
    assert result["dirs"] == ["step_00000001"]  # the partial step 2 was removed, freeing the space


def test_disk_full_is_recognised_through_remote_and_chained_errors():
    assert is_disk_full(OSError(28, "No space left on device"))
    assert is_disk_full(RuntimeError("ray::LearnerRank.save_checkpoint() ... OSError: [Errno 28] "
                                     "No space left on device"))
    try:
        try:
            raise OSError(122, "Disk quota exceeded")
        except OSError as inner:
            raise RuntimeError("save failed") from inner
    except RuntimeError as outer:
        assert is_disk_full(outer)
    assert not is_disk_full(OSError(13, "Permission denied"))
    assert issubclass(CheckpointWriteError, RuntimeError)
