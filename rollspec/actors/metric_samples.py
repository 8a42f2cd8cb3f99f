"""Status dicts and step records turned into metric samples (name, value, tags) of metric_catalog.

Pure (no Ray): the actors and the driver hand the samples to a RaySink. Windowed gauges
(acceptance, chosen k, tokens/s, reward mean) are differences of running totals between two calls,
so they describe the last export interval; a window with nothing in it leaves the gauge as it was.
"""

from collections.abc import Iterable

from rollspec.actors.metric_catalog import STEP_PHASES

Sample = tuple[str, float, dict[str, str]]
TOTAL = "total"
"""The `reason` of the rejected_messages (per channel) and dropped_groups rows that sum every reason:
always exported, also at 0, so a clean run shows a 0 rather than no series."""

LEARNER_PHASES = {"wait": "wait_s", "batch": "batch_s", "train": "step_time_s", "gather": "gather_s",
                  "publish": "publish_s"}
LEARNER_STATS = ("loss", "pg_loss", "grad_norm", "clip_fraction", "truncated_fraction", "is_weight_mean",
                 "behaviour_kl", "kl", "entropy", "lr", "num_tokens")


def rejected_samples(actor: str, rejected: dict[str, dict[str, int]]) -> list[Sample]:
    """rejected_messages rows of one actor: `rejected[channel][reason]` counts, plus each channel's total."""
    out = []
    for channel, reasons in rejected.items():
        tags = {"actor": actor, "channel": channel}
        out.append(("rejected_messages", float(sum(reasons.values())), {**tags, "reason": TOTAL}))
        out.extend(("rejected_messages", float(n), {**tags, "reason": reason}) for reason, n in reasons.items())
    return out


def endpoint_rejections(endpoints: dict[str, object]) -> dict[str, dict[str, int]]:
    """`rejected` (and a weight subscriber's refused versions) of each transport endpoint by channel name."""
    out = {}
    for channel, endpoint in endpoints.items():
        if endpoint is None:
            continue
        stats = endpoint.stats()
        reasons = dict(stats.rejected)
        if getattr(stats, "versions_rejected", 0):
            reasons["unauthenticated_version"] = stats.versions_rejected
        out[channel] = reasons
    return out


def endpoint_faults(endpoints: Iterable[object]) -> dict[str, int]:
    """Injected message faults (chaos) of these transport endpoints' outbound messages, summed by kind."""
    out: dict[str, int] = {}
    for endpoint in endpoints:
        if endpoint is None:
            continue
        for kind, n in endpoint.stats().faults.items():
            if kind != "sent" and n:
                out[kind] = out.get(kind, 0) + n
    return out


def _delta(now: dict, before: dict | None, key: str) -> float:
    return now.get(key, 0) - (before or {}).get(key, 0)


def _delta_list(now: dict, before: dict | None, key: str) -> list[float]:
    current, previous = list(now.get(key) or []), list((before or {}).get(key) or [])
    previous += [0] * (len(current) - len(previous))
    return [c - p for c, p in zip(current, previous)]


class RolloutSamples:
    """A rollout actor's samples from consecutive status() dicts."""

    def __init__(self, actor: str):
        self._actor = actor
        self._before: dict | None = None

    def __call__(self, status: dict) -> list[Sample]:
        tags, before = {"actor": self._actor}, self._before
        self._before = status
        out: list[Sample] = [
            ("rollout_tokens", status["num_tokens"], tags), ("rollout_verify_steps", status["num_verify_steps"], tags),
            ("rollout_accepted_tokens", status["num_accepted"], tags),
            ("rollout_drafted_tokens", status["num_drafted"], tags),
            ("actor_policy_version", status["policy_version"], tags),
            ("actor_draft_version", status["draft_version"], tags),
        ]
        out += [("rollout_engine_steps", n, {**tags, "k": str(k)})
                for k, n in enumerate(status.get("num_steps_by_k") or []) if n]
        verify, engine_s = _delta(status, before, "num_verify_steps"), _delta(status, before, "engine_s")
        if verify > 0:
            out.append(("rollout_acceptance_length", 1.0 + _delta(status, before, "num_accepted") / verify, tags))
        drafted = _delta_list(status, before, "drafted_per_position")
        accepted = _delta_list(status, before, "accepted_per_position")
        out += [("rollout_acceptance_rate", a / d, {**tags, "position": str(j + 1)})
                for j, (a, d) in enumerate(zip(accepted, drafted)) if d > 0]
        by_k = _delta_list(status, before, "num_steps_by_k")
        if sum(by_k) > 0:
            out.append(("rollout_chosen_k", sum(k * n for k, n in enumerate(by_k)) / sum(by_k), tags))
        if engine_s > 0:
            out.append(("rollout_tokens_per_s", _delta(status, before, "num_tokens") / engine_s, tags))
        return out + rejected_samples(self._actor, status.get("rejected", {}))


class RewardSamples:
    """A reward actor's samples from consecutive status() dicts."""

    def __init__(self, actor: str):
        self._actor = actor
        self._before: dict | None = None

    def __call__(self, status: dict) -> list[Sample]:
        tags, before = {"actor": self._actor}, self._before
        self._before = status
        out: list[Sample] = [("reward_scored", status["num_scored"], tags),
                             ("reward_errors", status["num_reward_errors"], tags)]
        scored_ok = _delta(status, before, "num_scored") - _delta(status, before, "num_reward_errors")
        if scored_ok > 0:
            out.append(("reward_score_mean", _delta(status, before, "reward_sum") / scored_ok, tags))
        return out + rejected_samples(self._actor, status.get("rejected", {}))


def refresh_samples(status: dict, actor: str = "draft-refresh") -> list[Sample]:
    """The draft-refresh actor's samples from its status()."""
    tags = {"actor": actor}
    out: list[Sample] = [("actor_policy_version", status["policy_version"], tags),
                         ("actor_draft_version", status["draft_version"], tags),
                         ("draft_refresh_published", status["num_published"], tags),
                         ("draft_refresh_samples", status["num_samples"], tags),
                         ("draft_refresh_seconds", status.get("refresh_s", 0.0), tags)]
    return out + rejected_samples(actor, status.get("rejected", {}))


def learner_samples(actor: str, result: dict, rejected: dict[str, dict[str, int]]) -> list[Sample]:
    """A learner rank's samples from one train_from_feed result (and rank 0's feed rejections)."""
    tags = {"actor": actor}
    out: list[Sample] = [("learner_seconds", result[key], {**tags, "phase": phase})
                         for phase, key in LEARNER_PHASES.items() if key in result]
    out += [("learner_stat", result[key], {**tags, "stat": key}) for key in LEARNER_STATS if key in result]
    if "version" in result:
        out.append(("actor_policy_version", result["version"], tags))
    return out + rejected_samples(actor, rejected)


def step_samples(metrics: dict) -> list[Sample]:
    """The driver's samples after a learner step (metrics from step_metrics.step_metrics)."""
    out: list[Sample] = [("step_reward_mean", metrics["reward_mean"], {}),
                         ("step_acceptance_length", metrics["acceptance_length"], {}),
                         ("step_tokens_per_s", metrics["rollout_tokens_per_s"], {}),
                         ("step_staleness_max", metrics["staleness_max"], {}),
                         ("policy_version", metrics["policy_version"], {}),
                         ("draft_version", metrics["draft_version"], {})]
    out += [("step_seconds", metrics[f"{phase}_s"], {"phase": phase}) for phase in STEP_PHASES
            if f"{phase}_s" in metrics]
    out += [("queue_depth", depth, {"queue": queue}) for queue, depth in metrics.get("queue_depths", {}).items()]
    return out


def staleness_observations(metrics: dict) -> Iterable[float]:
    """One observation per trained group of the step: its staleness."""
    for staleness, count in metrics.get("staleness_counts", {}).items():
        yield from [float(staleness)] * int(count)


def fleet_samples(queues: dict[str, dict], restarts: dict[str, int], dropped: dict[str, int],
                  broker_rejected: dict[str, int]) -> list[Sample]:
    """The driver's samples between steps: queue depths, actor restarts, drops, the broker's rejections."""
    out: list[Sample] = []
    for queue, stats in queues.items():
        out += [("queue_depth", stats["depth"], {"queue": queue}),
                ("queue_in_flight", stats["in_flight"], {"queue": queue})]
    out += [("actor_restarts", n, {"actor": actor}) for actor, n in restarts.items()]
    out += [("dropped_groups", n, {"reason": reason}) for reason, n in {TOTAL: sum(dropped.values()), **dropped}.items()]
    return out + rejected_samples("controller", {"broker": broker_rejected})
