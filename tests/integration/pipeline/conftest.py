"""One Ray session per test module (its own temp dir, loopback only) and tiny random models on disk."""

import os
import shutil
from pathlib import Path

import pytest

from rollspec.models.hf_dir import write_model_dir
from rollspec.models.random_models import random_decoder, tiny_config
from rollspec.rl.tokenizer import save_tokenizer
from rollspec.rl.vocab import VOCAB_SIZE


@pytest.fixture(scope="module")
def ray_session():
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray

    temp_dir = Path(f"/tmp/rs-it-{os.getpid()}")  # short: Ray keeps unix sockets under it
    ray.init(num_cpus=8, include_dashboard=False, _temp_dir=str(temp_dir), log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


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
            "learner.zero_stage=1", "learner.micro_batch_size=4", "checkpoint.every_steps=2"]
