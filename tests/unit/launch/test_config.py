"""Config errors are clear and early: unknown keys, wrong types, bounds, conflicts, bad overrides,
missing model directories, impossible resources."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from rollspec.launch.config import ConfigError, load_config
from rollspec.launch.overrides import OverrideError, apply_overrides, parse_override
from rollspec.launch.resources import check_cpus

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("preset", ["tiny.yaml", "tiny-async.yaml"])
def test_shipped_presets_validate(preset):
    config = load_config(REPO / "configs" / preset)
    assert config.models.policy == "zoo:policy"


@pytest.mark.parametrize("override, message", [
    ("rollout.kk=3", "rollout.kk: unknown key; expected one of ['backend', 'cpus_per_actor', 'depth', 'drafter', 'k'"),
    ("bogus=1", "bogus: unknown key; expected one of ['algorithm', 'chaos', 'checkpoint'"),
    ("rollout.k=abc", "rollout.k: Input should be a valid integer (got 'abc')"),
    ("rollout.k='3'", "rollout.k: Input should be a valid integer (got '3')"),
    ("algorithm.group_size=1", "algorithm.group_size: Input should be greater than or equal to 2 (got 1)"),
    ("rollout.drafter=medusa", "rollout.drafter: Input should be 'none', 'draft_model', 'eagle', 'mtp' or 'ngram'"),
    ("rollout.max_batch_size=2", "rollout.max_batch_size (2) must be >= algorithm.group_size (8)"),
    ("algorithm.max_new_tokens=256", "algorithm.max_new_tokens (256) must be < rollout.max_seq_len (256)"),
    ("reward.function=notapath", "reward.function 'notapath' must be 'builtin' or 'package.module:function'"),
    ("data.tasks={bogus: 1.0}", "unknown tasks ['bogus']"),
    ("models.policy=zoo:nope", "unknown zoo model 'zoo:nope'"),
    ("data.rl_fraction=0.96", "eval_fraction + rl_fraction must be < 1, got 0.05 + 0.96"),
    ("data.prompt_split=eval", "data.prompt_split: Input should be 'rl' or 'train'"),
    ("rollout=3", "rollout: Input should be a valid dictionary"),
])
def test_bad_values_name_the_key_the_value_and_what_was_expected(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(REPO / "configs" / "tiny.yaml", [override])
    assert message in str(info.value)


def test_missing_model_directory_names_the_key_and_path(tmp_path):
    with pytest.raises(ConfigError, match=f"models.policy: model directory '{tmp_path}/nope' does not exist"):
        load_config(None, [f"models.policy={tmp_path}/nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="models.draft: .*has no config.json"):
        load_config(None, [f"models.draft={tmp_path}/empty"])
    load_config(None, [f"models.draft={tmp_path}/nope", "rollout.drafter=ngram"])  # unused: not checked


@pytest.mark.parametrize("override", ["rollout.k", "=3", "rollout..k=3", "rollout.k=[unclosed", "1abc=2"])
def test_malformed_overrides_are_rejected(override):
    with pytest.raises(OverrideError):
        parse_override(override)
    with pytest.raises(ConfigError):
        load_config(None, [override])


def test_overrides_are_typed_like_yaml_and_applied_in_order():
    assert parse_override("a.b=1.5e-3") == (["a", "b"], 1.5e-3)
    assert parse_override("learner.lr=1e-4") == (["learner", "lr"], 1e-4)  # PyYAML alone reads a string
    assert parse_override("a=true") == (["a"], True)
    assert parse_override("a={x: 1}") == (["a"], {"x": 1})
    raw = apply_overrides({"rollout": {"k": 4}}, ["rollout.k=2", "rollout.k=3", "run.name=x"])
    assert raw == {"rollout": {"k": 3}, "run": {"name": "x"}}
    with pytest.raises(OverrideError, match="is a value, not a section"):
        apply_overrides({"rollout": {"k": 4}}, ["rollout.k.x=1"])


def test_config_is_frozen():
    config = load_config(None)
    with pytest.raises(ValidationError):
        config.rollout.k = 2


def test_bad_yaml_file_and_non_mapping(tmp_path):
    (tmp_path / "bad.yaml").write_text("rollout: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_impossible_resources_list_what_each_part_asks_and_what_there_is():
    config = load_config(None, ["rollout.num_actors=4", "rollout.cpus_per_actor=2", "learner.num_ranks=2"])
    assert config.requested_cpus() == 4 * 2 + 0.5 + 2 * 1.0 + 0.25
    with pytest.raises(ConfigError) as info:
        check_cpus(config, 8, "the local Ray (ray.num_cpus)")
    text = str(info.value)
    assert "needs 10.75 Ray CPUs" in text and "rollout (4 x 2.0) = 8" in text and "learner (2 x 1.0) = 2" in text
    assert "the local Ray (ray.num_cpus) has 8" in text
    check_cpus(load_config(None), 8, "x")


def test_rollout_backend_switch():
    assert load_config(None, []).rollout.backend == "native"
    assert load_config(None, ["rollout.backend=vllm", "rollout.drafter=eagle"]).rollout.backend == "vllm"
    with pytest.raises(ConfigError, match="'mtp' does not run on rollout.backend 'vllm'"):
        load_config(None, ["rollout.backend=vllm", "rollout.drafter=mtp"])
    with pytest.raises(ConfigError, match="rollout.backend"):
        load_config(None, ["rollout.backend=tgi"])

