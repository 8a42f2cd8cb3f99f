"""Scenario files: every shipped one loads with every assumption explained; a missing or unexplained one is an error."""

import dataclasses
import shutil

import pytest
import yaml

from rollspec.sim.scenario import ScenarioError
from rollspec.sim.scenario_file import SCENARIO_DIR, SECTIONS, load_scenario, scenario_names


def test_the_issue_scenarios_ship():
    assert {"paper-8b-sync", "paper-235b-async", "tiny-cpu"} <= set(scenario_names())


@pytest.mark.parametrize("name", scenario_names())
def test_every_field_of_every_section_is_present_and_explained(name):
    scenario = load_scenario(name)
    for section, cls in SECTIONS[scenario.cost_kind].items():
        for field in dataclasses.fields(cls):
            why = scenario.why.get(f"{section}.{field.name}", "")
            assert why.strip(), f"{name}: {section}.{field.name} has no reason"
    assert scenario.description and scenario.num_replicas >= 1
    assert scenario.alphas().size == scenario.speculation.k_max


def _copy(tmp_path, name="paper-8b-sync"):
    path = tmp_path / f"{name}.yaml"
    shutil.copy(SCENARIO_DIR / f"{name}.yaml", path)
    return path, yaml.safe_load(path.read_text())


def _write(path, doc):
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_missing_assumption_is_an_error_naming_it(tmp_path):
    path, doc = _copy(tmp_path)
    del doc["hardware"]["bandwidth_efficiency"]
    with pytest.raises(ScenarioError, match="bandwidth_efficiency"):
        load_scenario(_write(path, doc))


def test_a_value_without_a_reason_is_an_error(tmp_path):
    path, doc = _copy(tmp_path)
    doc["workload"]["group_size"] = {"value": 8, "why": " "}
    with pytest.raises(ScenarioError, match="workload.group_size"):
        load_scenario(_write(path, doc))


def test_an_unknown_assumption_is_an_error(tmp_path):
    path, doc = _copy(tmp_path)
    doc["training"]["learning_rate"] = {"value": 1e-6, "why": "not a simulator input"}
    with pytest.raises(ScenarioError, match="learning_rate"):
        load_scenario(_write(path, doc))


def test_numbers_are_checked_against_the_field_type(tmp_path):
    path, doc = _copy(tmp_path)
    doc["workload"]["group_size"]["value"] = "eight"
    with pytest.raises(ScenarioError, match="group_size must be int"):
        load_scenario(_write(path, doc))


def test_prompts_must_split_evenly_over_replicas(tmp_path):
    path, doc = _copy(tmp_path)
    doc["workload"]["prompts_per_step"]["value"] = 100  # 32 replicas
    with pytest.raises(ScenarioError, match="split evenly"):
        load_scenario(_write(path, doc))


def test_an_unknown_scenario_lists_the_shipped_ones():
    with pytest.raises(ScenarioError, match="paper-8b-sync"):
        load_scenario("paper-1t-sync")


def test_yaml_exponents_without_a_dot_are_numbers():
    # PyYAML reads 3.35e12 as a string; the loader converts by field type.
    scenario = load_scenario("paper-8b-sync")
    assert scenario.hardware.hbm_bytes_per_s == pytest.approx(3.35e12)
    assert scenario.kv_capacity_tokens() > 0
