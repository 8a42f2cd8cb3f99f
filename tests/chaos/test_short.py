"""The default suite's chaos subset (one tiny run, about 40 s): message faults on every channel, and
the invariant checker passes with nothing lost. The full set is `pytest -m chaos tests/chaos`."""

import dataclasses

from rollspec.chaos.scenarios import SCENARIOS


def test_message_faults_on_every_channel_lose_nothing(runner):
    scenario = dataclasses.replace(SCENARIOS["net-faults"], compare_weights=False)  # the baseline run is -m chaos
    outcome = runner.run(scenario)
    assert outcome.passed, outcome.problems
    assert outcome.items_lost == 0 and outcome.num_message_faults > 0
    assert outcome.message_faults["dropped"] > 0 and outcome.message_faults["duplicated"] > 0
    assert sum(outcome.actor_message_faults["rollout-0"].values()) > 0  # the actors' own endpoints inject too
