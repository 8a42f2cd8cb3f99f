"""Per-step metrics: reward, acceptance, throughput, staleness, drops and the step-time breakdown.

Breakdown of step t's wall time (from the end of step t-1 to the end of step t):
- weight_sync_s: until every rollout actor holds the version step t trains on (sync mode: the
  exposed cost of broadcasting and swapping weights);
- generate_s: first dispatch of the batch's groups to the last of them finished generating;
- reward_s: the scoring tail after the last generation;
- learner_wait_s: the learner waiting for a full batch (in async mode, the rollout time the
  pipeline failed to hide);
- train_s, publish_s: the optimizer step, and gathering + publishing the new version;
- draft_refresh_s: time the draft-refresh actor spent refreshing during the step (it runs beside
  the others; in synchronous mode rollouts use the new draft from the step after it is published).
In synchronous mode these are consecutive phases; in async mode generation overlaps training.
"""

import statistics
import time
from collections import Counter

from rollspec.actors.batch_assembler import GroupResolution
from rollspec.actors.fleet import FleetStatus
from rollspec.actors.metric_samples import LEARNER_STATS

WINDOW_LISTS = ("accepted_per_position", "drafted_per_position", "num_steps_by_k")


class StepClock:
    """Wall-clock marks of the current step; `close_step` returns its timings and starts the next."""

    def __init__(self) -> None:
        self._begin = 0.0
        self._synced: float | None = None
        self._learner_wait_s = 0.0
        self._last_result: dict = {}
        self._tokens = 0
        self._engine_s = 0.0
        self._lists: dict[str, list[int]] = {}
        self._refresh_s = 0.0
        self._version_needed = 0
        self._rate = 0.0

    def start(self, status: FleetStatus | None, version_needed: int = 0) -> None:
        """Begin timing a step; `version_needed` is the policy version the rollout actors must hold for it."""
        self._begin = time.monotonic()
        self._synced = None
        self._learner_wait_s = 0.0
        self._version_needed = version_needed
        self._tokens, self._engine_s = _totals(status)
        self._lists = {key: _list_total(status, key) for key in WINDOW_LISTS}
        self._refresh_s = _refresh_s(status)

    def rollouts_hold(self, version: int) -> None:
        """Called with the oldest policy version the rollout actors hold."""
        if self._synced is None and version >= self._version_needed:
            self._synced = time.monotonic()

    def learner_call(self, result: dict) -> None:
        """Account one learner call (its wait time, and its stats if it trained)."""
        self._learner_wait_s += result.get("wait_s", 0.0)
        self._last_result = result

    def close_step(self, status: FleetStatus | None) -> dict:
        """Timings of the step that just finished, from the fleet's counters; starts the next step."""
        now = time.monotonic()
        tokens, engine_s = _totals(status)
        num_actors = max(1, len(status.rollouts) if status is not None else 1)
        d_tokens, d_engine_s = tokens - self._tokens, (engine_s - self._engine_s) / num_actors
        if d_engine_s > 0:  # in async mode a step's rollouts may all have run in an earlier window
            self._rate = d_tokens / d_engine_s
        result = self._last_result
        out = {"step_s": now - self._begin,
               "weight_sync_s": (self._synced or now) - self._begin,
               "learner_wait_s": self._learner_wait_s,
               "train_s": result.get("step_time_s", 0.0),
               "publish_s": result.get("gather_s", 0.0) + result.get("publish_s", 0.0),
               "rollout_tokens": d_tokens,
               "rollout_tokens_per_s": self._rate,
               "draft_refresh_s": max(0.0, _refresh_s(status) - self._refresh_s)}
        # Per-step windows of the fleet's running totals (clamped at 0: a restarted actor starts over).
        for key in WINDOW_LISTS:
            totals, before = _list_total(status, key), self._lists.get(key, [])
            out[f"step_{key}"] = [max(0, n - (before[j] if j < len(before) else 0)) for j, n in enumerate(totals)]
        by_k = out["step_num_steps_by_k"]
        out["chosen_k_mean"] = sum(k * n for k, n in enumerate(by_k)) / sum(by_k) if sum(by_k) else 0.0
        self.start(status, version_needed=int(result.get("version", 0)))
        return out


def _totals(status: FleetStatus | None) -> tuple[int, float]:
    if status is None:
        return 0, 0.0
    return sum(s["num_tokens"] for s in status.rollouts), sum(s["engine_s"] for s in status.rollouts)


def _list_total(status: FleetStatus | None, key: str) -> list[int]:
    totals: list[int] = []
    for s in (status.rollouts if status is not None else []):
        values = s.get(key) or []
        totals.extend([0] * (len(values) - len(totals)))
        for j, value in enumerate(values):
            totals[j] += value
    return totals


def _refresh_s(status: FleetStatus | None) -> float:
    return float(status.refresh.get("refresh_s", 0.0)) if status is not None and status.refresh else 0.0


def step_metrics(step: int, trained: list[GroupResolution], result: dict, timings: dict, status: FleetStatus | None,
                 queue_depths: dict[str, int], *, max_staleness: int) -> dict:
    """One JSON-able record for learner step `step` (0-based) from the groups it trained."""
    rewards = [r for g in trained for r, why in zip(g.rewards, g.sample_reasons) if not why]
    drops = Counter(why for g in trained for why in g.sample_reasons if why)
    verify = sum(g.num_verify_steps for g in trained)
    staleness = [step - g.policy_version for g in trained]
    generated = [g.generated_at for g in trained]
    out = {
        "step": step, "time": time.time(), "policy_version": int(result.get("version", step + 1)),
        "draft_version": _draft_version(status),
        "rollout_policy_versions": [s["policy_version"] for s in status.rollouts] if status else [],
        "reward_mean": statistics.fmean(rewards) if rewards else 0.0,
        "num_groups": len(trained), "num_samples": len(rewards), "sample_drops": dict(drops),
        "groups_with_signal": sum(1 for g in trained if len({r for r, why in zip(g.rewards, g.sample_reasons)
                                                              if not why}) > 1),
        "acceptance_length": 1.0 + sum(g.num_accepted for g in trained) / verify if verify else 1.0,
        "draft_acceptance_rate": (sum(g.num_accepted for g in trained) / max(1, sum(g.num_drafted for g in trained))),
        "response_tokens_mean": statistics.fmean(n for g in trained for n in g.num_tokens) if trained else 0.0,
        "staleness_max": max(staleness, default=0), "staleness_mean": statistics.fmean(staleness) if staleness else 0.0,
        "staleness_violations": sum(1 for s in staleness if s > max_staleness),
        "staleness_counts": {str(s): n for s, n in sorted(Counter(staleness).items())},
        "generate_s": max(generated) - min(g.issued_at for g in trained) if trained else 0.0,
        "reward_s": max(0.0, max(g.scored_at for g in trained) - max(generated)) if trained else 0.0,
        "queue_depths": queue_depths,
        **timings,
    }
    out.update({f"learner_{k}": result[k] for k in LEARNER_STATS if k in result})
    if status is not None and status.rollouts and "num_steps_by_k" in status.rollouts[0]:
        by_k = [sum(col) for col in zip(*(s["num_steps_by_k"] for s in status.rollouts))]
        out["engine_steps_by_k"] = by_k
    return out


def _draft_version(status: FleetStatus | None) -> int:
    if status is None:
        return 0
    if status.refresh is not None:
        return int(status.refresh["draft_version"])
    return max((s["draft_version"] for s in status.rollouts), default=0)
