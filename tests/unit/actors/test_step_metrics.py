"""Per-step windows of the fleet's running totals, and restarts seen as a new process id."""

import pytest

from rollspec.actors.fleet import Fleet, FleetStatus
from rollspec.actors.step_metrics import StepClock


def fleet(*rollouts, refresh_s=0.0):
    return FleetStatus(list(rollouts), [], {"refresh_s": refresh_s, "draft_version": 0}, 0)


def rollout(tokens, engine_s, accepted, drafted, by_k):
    return {"num_tokens": tokens, "engine_s": engine_s, "accepted_per_position": accepted,
            "drafted_per_position": drafted, "num_steps_by_k": by_k, "policy_version": 0, "draft_version": 0}


def test_a_step_reports_what_the_fleet_did_since_the_previous_step():
    clock = StepClock()
    clock.start(fleet(rollout(100, 1.0, [5, 1], [10, 5], [2, 3, 0]), rollout(50, 1.0, [1], [2], [1, 1]),
                      refresh_s=2.0))
    clock.learner_call({"step_time_s": 0.3, "gather_s": 0.1, "publish_s": 0.05, "version": 1, "wait_s": 0.5})
    out = clock.close_step(fleet(rollout(160, 1.5, [9, 3, 1], [15, 10, 4], [2, 3, 4]),
                                 rollout(90, 1.5, [3], [4], [1, 5]), refresh_s=2.75))
    assert out["step_accepted_per_position"] == [6, 2, 1]  # both actors, positions they never drafted count 0
    assert out["step_drafted_per_position"] == [7, 5, 4]
    assert out["step_num_steps_by_k"] == [0, 4, 4]
    assert out["chosen_k_mean"] == pytest.approx((4 * 1 + 4 * 2) / 8)
    assert out["draft_refresh_s"] == pytest.approx(0.75)
    assert out["rollout_tokens"] == 100 and out["rollout_tokens_per_s"] == pytest.approx(100 / 0.5)
    assert out["train_s"] == 0.3 and out["publish_s"] == pytest.approx(0.15)


def test_a_restarted_actor_that_starts_its_totals_over_gives_no_negative_window():
    clock = StepClock()
    clock.start(fleet(rollout(100, 1.0, [5], [10], [2, 3])))
    out = clock.close_step(fleet(rollout(10, 0.1, [1], [1], [0, 1])))
    assert out["step_accepted_per_position"] == [0] and out["step_num_steps_by_k"] == [0, 0]


def test_restarts_are_counted_when_an_actor_answers_from_a_new_process():
    actors = Fleet(run="r")
    actors._count_restarts([{"name": "rollout-0", "pid": 10}, {"name": "reward-0", "pid": 11}, {"name": "x"}])
    actors._count_restarts([{"name": "rollout-0", "pid": 10}, {"name": "reward-0", "pid": 12}])
    actors._count_restarts([{"name": "rollout-0", "pid": 10}, {"name": "reward-0", "pid": 13}])
    assert actors.restarts == {"rollout-0": 0, "reward-0": 2}
