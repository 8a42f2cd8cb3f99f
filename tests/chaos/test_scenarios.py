"""Every chaos scenario and a few soak seeds on the real pipeline (Ray actors, ZeroMQ, DeepSpeed):
nothing lost, staleness and versions as promised, progress, and the undisturbed run's weights
where the scenario leaves the data unchanged. Marked chaos: `pytest -m chaos tests/chaos`."""

import dataclasses

import pytest

from rollspec.chaos.scenarios import SCENARIOS

pytestmark = pytest.mark.chaos


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_keeps_every_invariant(runner, name):
    scenario = SCENARIOS[name]
    outcome = runner.run(scenario)
    assert outcome.passed, outcome.problems
    assert outcome.items_lost == 0
    if scenario.compare_weights:
        assert outcome.weights_match is True
    kills = [*scenario.kills] + ([1] if scenario.kill_driver_after_checkpoint else [])
    assert len(outcome.events) == len(kills)  # every fault was injected ...
    assert all(e["recover_s"] is not None for e in outcome.events)  # ... and a step completed after each
    ends_run = sum(e["kind"] in ("kill_learner", "crash_controller", "kill_driver") for e in outcome.events)
    assert outcome.segments == 1 + ends_run - ("kill_driver" in [e["kind"] for e in outcome.events])
    if scenario.faults and any(f.startswith(("chaos.drop", "chaos.corrupt")) for f in scenario.faults):
        assert outcome.num_message_faults > 0
    if "draft_refresh.enabled=true" in scenario.setup and not scenario.kills:
        assert outcome.draft_version > 0  # distilled drafts crossed the faulty channels and were applied
    if scenario.faults and any(f.startswith("chaos.drop") for f in scenario.faults):
        for actor, counts in outcome.actor_message_faults.items():  # the actors' own endpoints inject too
            assert sum(counts.values()) > 0, actor
    for event in outcome.events:
        if event["kind"] in ("kill_rollout", "kill_reward"):
            assert event["actor_back_s"] is not None  # Ray restarted it and it answers again


@pytest.mark.parametrize("seed", range(3))
def test_soak_seed_loses_nothing(runner, seed):
    outcome = runner.soak(seed)
    assert outcome.passed, outcome.problems
    assert outcome.items_lost == 0 and outcome.events


def test_controller_crash_in_the_step_loop_resumes(runner):
    from rollspec.chaos.schedule import Fault

    crash = dataclasses.replace(SCENARIOS["reward-kill"], name="controller-crash",
                                kills=(Fault(kind="crash_controller", at_step=2),))
    outcome = runner.run(crash)
    assert outcome.passed, outcome.problems
    assert outcome.segments == 2 and outcome.weights_match is True


def test_weight_comparison_tells_different_training_data_apart(runner):
    from rollspec.chaos.invariants import weights_match

    other = runner.run(dataclasses.replace(SCENARIOS["reward-kill"], name="other-prompts", setup=("data.seed=1",),
                                           kills=(), compare_weights=False))
    assert other.passed, other.problems
    assert not weights_match(runner._final_fingerprint("other-prompts"), runner.baseline(()))
