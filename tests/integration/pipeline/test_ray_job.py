"""`rollspec train` under `ray job submit --working-dir .` against a `ray start --head` cluster started
by the `head` fixture (conftest.py: own temp dir, ports and auth token, loopback only)."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_train_runs_as_a_ray_job(head, tiny_overrides, tmp_path):
    address, env = head.address, head.env
    runtime_env = {"env_vars": {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                                "TORCH_EXTENSIONS_DIR": str(REPO / ".cache" / "torch_extensions")}}
    command = [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", ".",
               "--runtime-env-json", json.dumps(runtime_env), "--", "rollspec", "train", "--config",
               "configs/tiny.yaml", *tiny_overrides, "run.name=job", "algorithm.steps=3"]
    deadline = time.monotonic() + 120
    while True:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        # The job API answers before the head's dashboard agent is up; the submission is refused then.
        if "No available agent to submit job" not in done.stderr or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "on the Ray cluster at" in done.stdout and "step    3" in done.stdout
    summary = json.loads((tmp_path / "job" / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["ledger_problems"] == []
