"""Fixtures of the learner integration tests: DeepSpeed's CPU extension built once per machine, one
Ray session per test module (loopback only, its own temp dir), a tiny model directory and a fixed
batch with stale behaviour log-probs.

The Ray fixture is generic: lift `ray_session` to tests/integration/conftest.py to share it.
"""

import os
import shutil
import tempfile

import psutil
import pytest
import ray
import torch

from rollspec.actors.learner_env import build_deepspeed_extensions
from rollspec.engine.loader import load_model
from rollspec.models.hf_dir import write_model_dir
from rollspec.models.random_models import random_decoder, tiny_config
from rollspec.rl.grpo_step import PolicyLogits, token_logprobs
from rollspec.rl.trajectory_batch import RolloutSample, build_batch
from rollspec.rl.vocab import BOS_ID, EOS_ID, SEP_ID

RAY_CPUS = 2
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


@pytest.fixture(scope="session", autouse=True)
def deepspeed_extensions() -> float:
    """Seconds spent building (first time on a machine) or loading DeepSpeed's CPU comm extension
    in the persistent cache, before any rank needs it."""
    return build_deepspeed_extensions()


@pytest.fixture(scope="module")
def ray_session():
    """A local Ray with RAY_CPUS CPUs and no dashboard, in a temp dir of its own; shut down after
    the module. tests/conftest.py has set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 already."""
    assert os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") == "0", "Ray would leave loopback"
    assert not ray.is_initialized(), "another test left Ray running"
    temp_dir = tempfile.mkdtemp(prefix="rs-ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    ray.init(_temp_dir=temp_dir, include_dashboard=False, num_cpus=RAY_CPUS, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    """A tiny random Qwen3 (78k parameters) as a Hugging Face format directory."""
    path = tmp_path_factory.mktemp("policy")
    write_model_dir(path, random_decoder(tiny_config(), seed=0, std=0.1))
    return str(path)


@pytest.fixture(scope="module")
def fixed_batch(model_dir):
    """9 rollouts in 3 groups, behaviour log-probs the model's own minus up to 0.5 (a stale engine):
    over 2 ranks with micro-batches of 2, rank 0 runs 3 micro-batches and rank 1 two plus a filler."""
    model = PolicyLogits(load_model(model_dir).model)
    generator = torch.Generator().manual_seed(1)
    samples = []
    for i in range(9):
        completion = torch.randint(5, 30, (2 + i % 5,), generator=generator).tolist() + [EOS_ID]
        samples.append(RolloutSample(prompt_token_ids=[BOS_ID, 5 + i % 4, 6, SEP_ID], token_ids=completion,
                                     logprobs=[0.0] * len(completion), reward=float(i % 3 == 0) + 0.1 * i,
                                     group_id=f"g{i // 3}", policy_version=i % 2))
    batch = build_batch(samples)
    with torch.no_grad():
        current = token_logprobs(model, batch)
    noise = 0.5 * torch.rand(current.shape, generator=generator)
    return build_batch([
        RolloutSample(prompt_token_ids=s.prompt_token_ids, token_ids=s.token_ids, reward=s.reward,
                      group_id=s.group_id, policy_version=s.policy_version,
                      logprobs=(current[row] - noise[row])[batch.response_mask_BT[row].bool()].tolist())
        for row, s in enumerate(samples)
    ])


def non_loopback_connections() -> list[str]:
    """TCP sockets of this process and its descendants (Ray's head processes and workers, the
    learner ranks) that are established with an end outside loopback, or listening on a
    non-loopback address (e.g. torch's TCPStore binds every interface)."""
    found = []
    processes = [psutil.Process()] + psutil.Process().children(recursive=True)
    for process in processes:
        try:
            connections = process.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for conn in connections:
            if conn.status == psutil.CONN_LISTEN and conn.laddr.ip not in LOOPBACK:
                found.append(f"pid {process.pid} {process.name()}: listening on {conn.laddr}")
            elif conn.status == psutil.CONN_ESTABLISHED and (
                    conn.laddr.ip not in LOOPBACK or (conn.raddr and conn.raddr.ip not in LOOPBACK)):
                found.append(f"pid {process.pid} {process.name()}: {conn.laddr} -> {conn.raddr}")
    return found


@pytest.fixture(scope="session")
def loopback_check():
    """The connection check as a fixture, so test modules need not import this conftest."""
    return non_loopback_connections
