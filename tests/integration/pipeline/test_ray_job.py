"""`rollspec train` under `ray job submit --working-dir .` against a `ray start --head` cluster started
here (own temp dir, ports and auth token, loopback only) and stopped here, by process group."""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def head(tmp_path):
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(16), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    temp_dir = Path(f"/tmp/rs-head-{os.getpid()}")
    dashboard = free_port()
    command = [str(BIN / "ray"), "start", "--head", "--block", f"--temp-dir={temp_dir}", f"--port={free_port()}",
               f"--dashboard-port={dashboard}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
               # Every port explicit: a default one (the agent's 52365, the client server's 10001) may be
               # held by another Ray on this machine, and the head then runs without a job agent.
               f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
               f"--dashboard-agent-grpc-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
               f"--metrics-export-port={free_port()}", "--node-ip-address=127.0.0.1", "--num-cpus=8",
               "--disable-usage-stats"]
    log = open(tmp_path / "head.log", "w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 120
        while subprocess.run([str(BIN / "ray"), "job", "list", "--address", address], env=env,
                             capture_output=True).returncode != 0:
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "head.log").read_text()
            time.sleep(2)
        yield address, env
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # this head's process group only: never `ray stop`
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
        subprocess.run(["rm", "-rf", str(temp_dir)])


@pytest.mark.slow
def test_train_runs_as_a_ray_job(head, tiny_overrides, tmp_path):
    address, env = head
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
