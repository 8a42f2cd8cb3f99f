"""Live metric samples: windows over running totals, tags that match the catalog, the Ray sink's counters."""

import pytest

from rollspec.actors import ray_metrics
from rollspec.actors.metric_catalog import CATALOG, STEP_PHASES, prometheus_name
from rollspec.actors.metric_samples import (
    TOTAL,
    RewardSamples,
    RolloutSamples,
    fleet_samples,
    learner_samples,
    refresh_samples,
    rejected_samples,
    staleness_observations,
    step_samples,
)


def rollout_status(**totals) -> dict:
    base = dict(num_tokens=0, num_verify_steps=0, num_accepted=0, num_drafted=0, engine_s=0.0, policy_version=0,
                draft_version=0, num_engine_steps=0, accepted_per_position=[], drafted_per_position=[],
                num_steps_by_k=[0, 0, 0, 0], rejected={"prompts": {}})
    return {**base, **totals}


def by_name(samples) -> dict:
    out = {}
    for name, value, tags in samples:
        out.setdefault(name, {})[tuple(sorted(tags.items()))] = value
    return out


def one(samples, name):
    values = list(by_name(samples)[name].values())
    assert len(values) == 1, values
    return values[0]


def test_rollout_windows_are_differences_of_the_running_totals():
    samples = RolloutSamples("rollout-0")
    samples(rollout_status(num_tokens=100, num_verify_steps=10, num_accepted=10, num_drafted=30, engine_s=1.0,
                           accepted_per_position=[6, 4, 0], drafted_per_position=[10, 10, 10],
                           num_steps_by_k=[5, 0, 0, 5]))
    # Next window: 60 tokens in 0.5 s, 20 verify steps accepting 30 drafts; positions 1..3 accept 16/20, 10/20, 4/10.
    second = samples(rollout_status(num_tokens=160, num_verify_steps=30, num_accepted=40, num_drafted=80,
                                    engine_s=1.5, policy_version=2, draft_version=1,
                                    accepted_per_position=[22, 14, 4], drafted_per_position=[30, 30, 20],
                                    num_steps_by_k=[5, 0, 10, 5]))
    assert one(second, "rollout_acceptance_length") == pytest.approx(1.0 + 30 / 20)
    assert one(second, "rollout_tokens_per_s") == pytest.approx(60 / 0.5)
    assert one(second, "rollout_chosen_k") == pytest.approx(2.0)  # the window ran 10 steps, all at k=2
    rates = {dict(tags)["position"]: v for tags, v in by_name(second)["rollout_acceptance_rate"].items()}
    assert rates == pytest.approx({"1": 0.8, "2": 0.5, "3": 0.4})
    assert one(second, "rollout_tokens") == 160 and one(second, "actor_policy_version") == 2
    steps_by_k = {dict(tags)["k"]: v for tags, v in by_name(second)["rollout_engine_steps"].items()}
    assert steps_by_k == {"0": 5, "2": 10, "3": 5}


def test_an_idle_window_leaves_the_windowed_gauges_alone():
    samples = RolloutSamples("rollout-0")
    status = rollout_status(num_tokens=50, num_verify_steps=5, num_accepted=5, engine_s=0.5, num_steps_by_k=[0, 5])
    samples(status)
    idle = by_name(samples(dict(status)))
    for name in ("rollout_acceptance_length", "rollout_acceptance_rate", "rollout_chosen_k", "rollout_tokens_per_s"):
        assert name not in idle
    assert list(idle["rollout_tokens"].values()) == [50]


def test_reward_mean_covers_only_the_window_and_skips_errors():
    samples = RewardSamples("reward-0")
    samples({"num_scored": 4, "num_reward_errors": 0, "reward_sum": 4.0})
    second = samples({"num_scored": 10, "num_reward_errors": 2, "reward_sum": 5.0})
    assert one(second, "reward_score_mean") == pytest.approx(1.0 / 4)
    assert one(second, "reward_errors") == 2 and one(second, "reward_scored") == 10


def test_rejections_and_drops_always_export_a_total_even_at_zero():
    rows = by_name(rejected_samples("rollout-0", {"prompts": {}, "weights": {"bad_mac": 2, "schema": 1}}))
    totals = {dict(t)["channel"]: v for t, v in rows["rejected_messages"].items() if dict(t)["reason"] == TOTAL}
    assert totals == {"prompts": 0, "weights": 3}
    dropped = by_name(fleet_samples({}, {}, {}, {}))["dropped_groups"]
    assert dropped == {(("reason", TOTAL),): 0}


def every_producer_sample():
    status = rollout_status(num_verify_steps=2, num_accepted=1, engine_s=0.1, num_tokens=3,
                            accepted_per_position=[1], drafted_per_position=[2], num_steps_by_k=[0, 2])
    step = {"reward_mean": 0.5, "acceptance_length": 2.0, "rollout_tokens_per_s": 10.0, "staleness_max": 1,
            "policy_version": 3, "draft_version": 1, "queue_depths": {"prompts": 2},
            **{f"{phase}_s": 0.1 for phase in STEP_PHASES}}
    return [
        *RolloutSamples("rollout-0")(status),
        *RewardSamples("reward-0")({"num_scored": 2, "num_reward_errors": 0, "reward_sum": 1.0,
                                    "rejected": {"scored": {}}}),
        *refresh_samples({"policy_version": 2, "draft_version": 1, "num_published": 1, "num_samples": 5,
                          "refresh_s": 0.4, "rejected": {"draft_samples": {}}}),
        *learner_samples("learner-0", {"wait_s": 1.0, "step_time_s": 0.2, "loss": 0.1, "version": 3.0},
                         {"scored": {}}),
        *step_samples(step),
        *[("staleness", s, {}) for s in staleness_observations({"staleness_counts": {"0": 2, "1": 1}})],
        *fleet_samples({"prompts": {"depth": 1, "in_flight": 2}}, {"rollout-0": 0}, {"stale": 1}, {}),
    ]


def test_every_sample_is_a_catalog_metric_with_exactly_its_tags():
    """Ray refuses a missing or unknown tag key at record time, which would stop an actor's loop."""
    samples = every_producer_sample()
    for name, value, tags in samples:
        assert set(tags) | {"run"} == set(CATALOG[name].tags), name
        assert isinstance(value, (int, float))
    assert {name for name, _, _ in samples} == set(CATALOG)  # and every catalog metric has a producer


def test_staleness_is_one_observation_per_trained_group():
    assert sorted(staleness_observations({"staleness_counts": {"0": 2, "2": 1}})) == [0.0, 0.0, 2.0]


class FakeMetric:
    def __init__(self, name, description="", tag_keys=(), boundaries=None):
        self.name, self.tag_keys, self.calls = name, tag_keys, []

    def set(self, value, tags):
        self.calls.append(("set", value, tags))

    def inc(self, value, tags):
        self.calls.append(("inc", value, tags))

    def observe(self, value, tags):
        self.calls.append(("observe", value, tags))


def test_the_sink_turns_running_totals_into_counter_increments(monkeypatch):
    for kind in ("Gauge", "Counter", "Histogram"):
        monkeypatch.setattr(ray_metrics, kind, FakeMetric)
    sink = ray_metrics.RaySink("r1")
    tags = {"actor": "rollout-0"}
    sink.record([("rollout_tokens", 100, tags), ("rollout_acceptance_length", 2.5, tags), ("staleness", 1, {})])
    sink.record([("rollout_tokens", 100, tags)])  # no change: no increment
    sink.record([("rollout_tokens", 160, tags), ("rollout_tokens", 7, {"actor": "rollout-1"})])
    counter = sink._metrics["rollout_tokens"]
    assert counter.name == "rollspec_rollout_tokens" and counter.tag_keys == ("run", "actor")
    assert counter.calls == [("inc", 100.0, {"run": "r1", "actor": "rollout-0"}),
                             ("inc", 60.0, {"run": "r1", "actor": "rollout-0"}),
                             ("inc", 7.0, {"run": "r1", "actor": "rollout-1"})]
    assert sink._metrics["rollout_acceptance_length"].calls == [("set", 2.5, {"run": "r1", "actor": "rollout-0"})]
    assert sink._metrics["staleness"].calls == [("observe", 1.0, {"run": "r1"})]
    assert prometheus_name("rollout_tokens") == "ray_rollspec_rollout_tokens_total"
