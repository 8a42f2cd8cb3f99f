"""One Ray session per test module (its own temp dir, loopback only), a `ray start --head` cluster for
`ray job submit` tests, and tiny random models on disk."""

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pytest

from rollspec.models.hf_dir import write_model_dir
from rollspec.models.random_models import random_decoder, tiny_config
from rollspec.rl.tokenizer import save_tokenizer
from rollspec.rl.vocab import VOCAB_SIZE

BIN = Path(sys.executable).parent


class RayHead(NamedTuple):
    """A running head: its job API address, the environment to call `ray` with, its Prometheus port,
    and the session id of its processes (the head's pid)."""

    address: str
    env: dict[str, str]
    metrics_port: int
    session_id: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def head(tmp_path):
    """`ray start --head` with its own temp dir, ports and auth token, loopback only; stopped by process group."""
    # Metrics shipped to the node's Prometheus endpoint every second (default 10 s): a short test run's
    # actors are then scraped before they exit, and their series vanish with them.
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(16), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "RAY_metrics_report_interval_ms": "1000"}
    temp_dir = Path(f"/tmp/rs-head-{os.getpid()}")
    dashboard, metrics_port = free_port(), free_port()
    command = [str(BIN / "ray"), "start", "--head", "--block", f"--temp-dir={temp_dir}", f"--port={free_port()}",
               f"--dashboard-port={dashboard}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
               # Every port explicit: a default one (the agent's 52365, the client server's 10001) may be
               # held by another Ray on this machine, and the head then runs without a job agent.
               f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
               f"--dashboard-agent-grpc-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
               f"--metrics-export-port={metrics_port}", "--node-ip-address=127.0.0.1", "--num-cpus=8",
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
        yield RayHead(address, env, metrics_port, process.pid)
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # this head's process group only: never `ray stop`
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
        subprocess.run(["rm", "-rf", str(temp_dir)])


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """A 2-layer policy and a 1-layer draft model over the task vocabulary, with its tokenizer."""
    root = tmp_path_factory.mktemp("models")
    save_tokenizer(root / "tokenizer")
    policy = random_decoder(tiny_config(vocab_size=VOCAB_SIZE), seed=1, std=0.05)
    draft = random_decoder(tiny_config(vocab_size=VOCAB_SIZE, num_layers=1, hidden_size=32, num_heads=2,
                                       num_kv_heads=1, intermediate_size=64), seed=2, std=0.05)
    return {"policy": write_model_dir(root / "policy", policy, tokenizer_dir=root / "tokenizer"),
            "draft": write_model_dir(root / "draft", draft, tokenizer_dir=root / "tokenizer")}


@pytest.fixture
def tiny_overrides(tiny_models, tmp_path):
    """Overrides that turn configs/tiny.yaml into a seconds-long run on the tiny models."""
    return [f"models.policy={tiny_models['policy']}", f"models.draft={tiny_models['draft']}",
            f"run.root={tmp_path}", "run.progress=false", "algorithm.prompts_per_step=4", "algorithm.group_size=2",
            "algorithm.max_new_tokens=16", "rollout.max_batch_size=8", "rollout.max_seq_len=64",
            "learner.zero_stage=1", "learner.micro_batch_size=4", "checkpoint.every_steps=2",
            "data.heldout_prompts=4", "data.heldout_samples=2"]
