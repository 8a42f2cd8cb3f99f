"""Every live metric rollspec exports, by name: kind, tag keys and meaning.

One table serves three readers: the Ray sink (ray_metrics.py) declares exactly these metrics, the
Grafana dashboard (launch/grafana.py) draws a panel for each, and the Prometheus scrape test looks
for each. Prometheus shows them as `ray_rollspec_<name>` (counters with a `_total` suffix).

Kinds: "gauge" (a value now, or a running total that must be visible while still 0, such as error
counts), "counter" (a monotone total per actor process; Ray tags each process with its WorkerId, so
a restarted actor starts a new series), "histogram". Windowed gauges in actors cover the last
export interval (ray_metrics.EXPORT_EVERY_S).
"""

import dataclasses
from typing import Literal

PREFIX = "rollspec_"
STALENESS_BOUNDARIES = (0.5, 1.5, 2.5, 3.5, 4.5, 8.5, 16.5)
STEP_PHASES = ("step", "weight_sync", "generate", "reward", "learner_wait", "train", "publish", "draft_refresh")
"""Values of the `phase` tag of step_seconds: the step's wall time and its parts (see step_metrics.py)."""


@dataclasses.dataclass(frozen=True, slots=True)
class MetricDef:
    """One metric: Prometheus type, tag keys (every metric also has `run`), help text, dashboard group."""

    kind: Literal["gauge", "counter", "histogram"]
    tags: tuple[str, ...]
    help: str
    group: str
    unit: str = "short"


def _m(kind, tags, text, group, unit="short") -> MetricDef:
    return MetricDef(kind, ("run", *tags), text, group, unit)


CATALOG: dict[str, MetricDef] = {
    # ---- driver: one value per learner step
    "step_reward_mean": _m("gauge", (), "mean reward of the samples trained in the last step", "step"),
    "step_acceptance_length": _m("gauge", (), "tokens per verify step over the last step's trained groups", "step"),
    "step_tokens_per_s": _m("gauge", (), "rollout tokens per second of engine time in the last step", "step"),
    "step_seconds": _m("gauge", ("phase",), "last step's wall time (phase=step) and its breakdown", "step", "s"),
    "step_staleness_max": _m("gauge", (), "largest step - policy version among the last step's groups", "step"),
    "staleness": _m("histogram", (), "step - policy version of every trained group", "step"),
    "policy_version": _m("gauge", (), "latest policy version (the learner's)", "versions"),
    "draft_version": _m("gauge", (), "latest draft version (the draft-refresh actor's)", "versions"),
    "queue_depth": _m("gauge", ("queue",), "items waiting in a broker queue", "transport"),
    "queue_in_flight": _m("gauge", ("queue",), "items leased to a consumer and not yet acked", "transport"),
    "dropped_groups": _m("gauge", ("reason",), "prompt groups dropped so far, by reason and in total", "step"),
    "actor_restarts": _m("gauge", ("actor",), "times Ray restarted the actor in this run", "health"),
    # ---- every actor
    "rejected_messages": _m("gauge", ("actor", "channel", "reason"),
                            "inbound messages rejected (malformed, unexpected, unauthenticated), total", "health"),
    "actor_policy_version": _m("gauge", ("actor",), "policy version the actor holds", "versions"),
    "actor_draft_version": _m("gauge", ("actor",), "draft version the actor holds or published", "versions"),
    # ---- rollout actors
    "rollout_acceptance_length": _m("gauge", ("actor",), "tokens emitted per verify step (1 = no draft accepted)",
                                    "speculation"),
    "rollout_acceptance_rate": _m("gauge", ("actor", "position"),
                                  "fraction of drafts accepted at draft position 1..k", "speculation", "percentunit"),
    "rollout_chosen_k": _m("gauge", ("actor",), "mean speculation depth k of the engine steps", "speculation"),
    "rollout_engine_steps": _m("counter", ("actor", "k"), "engine steps run at depth k", "speculation"),
    "rollout_tokens_per_s": _m("gauge", ("actor",), "tokens generated per second of engine time", "throughput"),
    "rollout_tokens": _m("counter", ("actor",), "tokens generated", "throughput"),
    "rollout_verify_steps": _m("counter", ("actor",), "verify steps (sequence x step with k >= 1)", "speculation"),
    "rollout_accepted_tokens": _m("counter", ("actor",), "draft tokens accepted", "speculation"),
    "rollout_drafted_tokens": _m("counter", ("actor",), "draft tokens proposed", "speculation"),
    # ---- reward actors
    "reward_scored": _m("counter", ("actor",), "samples scored", "reward"),
    "reward_errors": _m("gauge", ("actor",), "reward function errors (raised, timed out, non-finite), total",
                        "reward"),
    "reward_score_mean": _m("gauge", ("actor",), "mean reward of the samples scored recently", "reward"),
    # ---- draft refresh
    "draft_refresh_seconds": _m("gauge", ("actor",), "time spent refreshing the drafter (training, publishing), "
                                "total", "drafter", "s"),
    "draft_refresh_published": _m("gauge", ("actor",), "draft versions published, total", "drafter"),
    "draft_refresh_samples": _m("counter", ("actor",), "draft training samples received", "drafter"),
    # ---- learner ranks
    "learner_seconds": _m("gauge", ("actor", "phase"), "last learner step: wait, batch, train, gather, publish",
                          "learner", "s"),
    "learner_stat": _m("gauge", ("actor", "stat"), "last learner step's loss, grad norm, KL, entropy, ...",
                       "learner"),
}


def full_name(name: str) -> str:
    """The name given to Ray (Prometheus adds `ray_` in front)."""
    return PREFIX + name


def prometheus_name(name: str) -> str:
    """The series name on the node's Prometheus endpoint."""
    suffix = "_total" if CATALOG[name].kind == "counter" else ""
    return f"ray_{PREFIX}{name}{suffix}"
