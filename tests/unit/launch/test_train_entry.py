"""The pieces of `rollspec train` that need no Ray: run directories, specs from config, the CLI's errors."""

import os
import subprocess
import sys
import textwrap

import pytest

from rollspec.launch.cli import main
from rollspec.launch.config import ConfigError, load_config
from rollspec.launch.progress import step_line
from rollspec.launch.run_dir import RunDir
from rollspec.launch.specs import ModelPaths, build_specs
from rollspec.launch.train import check_reward_function
from rollspec.models.hf_dir import write_model_dir
from rollspec.models.random_models import random_decoder, tiny_config
from rollspec.rl.split import Split, split_of
from rollspec.rl.vocab import EOS_ID, VOCAB_SIZE


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "policy"
    write_model_dir(path, random_decoder(tiny_config(vocab_size=VOCAB_SIZE), seed=0))
    return path


def test_run_directory_rules(tmp_path):
    config = load_config(None, [f"run.root={tmp_path}", "run.name=r"])
    with pytest.raises(ConfigError, match="--resume: run directory .* does not exist"):
        RunDir.open(config, resume=True)
    run = RunDir.open(config, resume=False)
    run.append_metrics({"step": 0})
    with pytest.raises(ConfigError, match="already exists; pass --resume"):
        RunDir.open(config, resume=False)
    assert RunDir.open(config, resume=True).metrics() == [{"step": 0}]
    fresh = RunDir.open(load_config(None, [f"run.root={tmp_path}", "run.name=r", "run.overwrite=true"]), resume=False)
    assert fresh.metrics() == []


def test_specs_carry_the_config_through(policy_dir):
    config = load_config(None, ["rollout.k=3", "rollout.drafter=ngram", "algorithm.temperature=0.7",
                                "algorithm.max_staleness=2", "learner.zero_stage=3", "algorithm.prompts_per_step=5"])
    specs = build_specs(config, ModelPaths(policy=policy_dir, draft=None))
    assert specs.rollout.k == 3 and specs.rollout.engine.k_max == 3 and specs.rollout.draft_path is None
    assert specs.rollout.sampling.temperature == 0.7 and specs.rollout.sampling.stop_token_ids == (EOS_ID,)
    assert specs.learner.loss.temperature == 0.7 and specs.learner.zero_stage == 3
    assert specs.controller.admission.max_staleness == 2 and specs.feed.admission.prompts_per_step == 5
    assert specs.refresh is None  # n-gram has no weights to refresh
    assert specs.feed.vocab_size == VOCAB_SIZE


def test_the_prompt_stream_draws_from_the_configured_split(policy_dir):
    for choice, expected in (("rl", Split.RL), ("train", Split.TRAIN)):
        config = load_config(None, [f"data.prompt_split={choice}", "data.eval_fraction=0.1", "data.rl_fraction=0.2"])
        mixture = build_specs(config, ModelPaths(policy=policy_dir, draft=None)).controller.prompt_mixture()
        assert {split_of(e.prompt, 0.1, 0.2) for e in mixture.take(200)} == {expected}


def test_a_user_reward_function_that_does_not_import_fails_before_anything_starts(tmp_path, monkeypatch):
    (tmp_path / "rewards_ok.py").write_text("def f(prompt, response):\n    return 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    check_reward_function(load_config(None, ["reward.function=rewards_ok:f"]))
    with pytest.raises(ConfigError, match="reward.function 'rewards_ok:g': module 'rewards_ok' has no attribute 'g'"):
        check_reward_function(load_config(None, ["reward.function=rewards_ok:g"]))


def test_cli_reports_config_errors_with_exit_code_2(capsys):
    assert main(["train", "rollout.k=abc"]) == 2
    assert "rollout.k: Input should be a valid integer" in capsys.readouterr().err


def test_help_is_light_and_the_loopback_switch_is_set_before_ray_can_be_imported():
    code = textwrap.dedent("""
        import os, sys
        from rollspec.launch.cli import main
        print("LOOPBACK", os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"))
        try:
            main(["train", "--help"])
        except SystemExit:
            pass
        heavy = [m for m in ("torch", "ray", "deepspeed") if m in sys.modules]
        print("HEAVY", heavy)
    """)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert "HEAVY []" in out and "--resume" in out and "LOOPBACK 0" in out


def test_step_line_shows_reward_acceptance_throughput_and_breakdown():
    metrics = {"step": 4, "reward_mean": 0.5, "acceptance_length": 2.25, "rollout_tokens_per_s": 812.0,
               "staleness_max": 1, "policy_version": 5, "draft_version": 4, "step_s": 3.0, "weight_sync_s": 0.1,
               "generate_s": 2.0, "reward_s": 0.05, "learner_wait_s": 2.1, "train_s": 0.7, "publish_s": 0.1,
               "sample_drops": {"reward_error": 2}}
    line = step_line(metrics)
    for text in ("step    5", "reward 0.500", "acc_len 2.25", "812 tok/s", "gen 2.00", "train 0.70",
                 "reward_error=2", "v5/d4"):
        assert text in line
