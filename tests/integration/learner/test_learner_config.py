"""LearnerConfig validation, the DeepSpeed config it becomes, and the rank environment (no Ray, no
DeepSpeed import: fast)."""

import math
import re
import socket

import pytest

from rollspec.actors.deepspeed_config import deepspeed_config
from rollspec.actors.learner_config import LearnerConfig, LearnerConfigError
from rollspec.actors.learner_env import default_extensions_dir, free_loopback_port, rank_environment, rendezvous_file


@pytest.mark.parametrize("field, value, expected", [
    ("zero_stage", 4, "1, 2 or 3"),
    ("dtype", "float16", "'float32' or 'bfloat16'"),
    ("lr", 0.0, "a finite float > 0"),
    ("betas", (0.9, 1.0), "two floats in [0, 1)"),
    ("grad_clip", 0.0, "a float > 0 (math.inf for no clipping)"),
    ("micro_batch_size", 0, "an int >= 1"),
    ("num_ranks", 1.5, "an int >= 1"),
    ("cpus_per_rank", 0.0, "a float > 0"),
    ("placement_timeout_s", -1.0, "a float > 0"),
])
def test_bad_fields_are_named_with_their_value(field, value, expected):
    with pytest.raises(LearnerConfigError, match=re.escape(f"LearnerConfig.{field} must be {expected}")) as info:
        LearnerConfig(**{field: value})
    assert str(info.value).endswith(f"got {value!r}")


def test_zero3_config_shards_tiny_parameters_and_owns_the_accumulation_boundary():
    config = deepspeed_config(LearnerConfig(zero_stage=3, num_ranks=4, micro_batch_size=3))
    zero = config["zero_optimization"]
    assert zero["stage"] == 3
    assert zero["stage3_param_persistence_threshold"] == 0 and zero["stage3_model_persistence_threshold"] == 0
    assert config["gradient_accumulation_steps"] == 1
    assert config["train_batch_size"] == 12 and config["train_micro_batch_size_per_gpu"] == 3
    assert config["bf16"] == {"enabled": False}
    assert config["zero_allow_untested_optimizer"] is True


def test_stage_precision_and_clipping_translate():
    config = deepspeed_config(LearnerConfig(zero_stage=1, dtype="bfloat16", grad_clip=math.inf))
    assert "stage3_param_persistence_threshold" not in config["zero_optimization"]
    assert config["bf16"] == {"enabled": True}
    assert config["gradient_clipping"] == 0.0  # DeepSpeed's "off"
    assert deepspeed_config(LearnerConfig(grad_clip=0.5))["gradient_clipping"] == 0.5


def test_rank_environment_keeps_to_loopback():
    env = rank_environment(rank=1, world_size=2, master_port=29555, extensions_dir="/x", use_cuda=False)
    assert env["MASTER_ADDR"] == "127.0.0.1" and env["GLOO_SOCKET_IFNAME"] == "lo"
    assert (env["RANK"], env["WORLD_SIZE"], env["MASTER_PORT"]) == ("1", "2", "29555")
    assert env["DS_ACCELERATOR"] == "cpu" and env["TORCH_EXTENSIONS_DIR"] == "/x"
    assert env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert "DS_ACCELERATOR" not in rank_environment(rank=0, world_size=1, master_port=1, extensions_dir="/x",
                                                    use_cuda=True)


def test_free_loopback_port_is_bindable_and_rendezvous_files_are_distinct():
    port = free_loopback_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    assert rendezvous_file("abc1") != rendezvous_file("abc2")
    with pytest.raises(ValueError, match="alphanumeric"):
        rendezvous_file("../etc")


def test_extensions_dir_defaults_to_the_environment_then_the_repo_cache(monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", "/somewhere")
    assert default_extensions_dir() == "/somewhere"
    assert LearnerConfig().torch_extensions_dir == "/somewhere"
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR")
    assert default_extensions_dir().endswith(".cache/torch_extensions")
