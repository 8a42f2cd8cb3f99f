"""The invariant checker run after every chaos scenario: DESIGN invariants 2-4 on a finished run, from
what the run left on disk (ledger, per-step metrics, restores), plus liveness and weight equality.

Pure logic over JSON-able data, so it is unit-tested on hand-made ledgers (each check can fail).

- nothing lost, nothing twice: every issued group is trained in exactly one step or dropped with a
  reason; every step trained exactly prompts_per_step groups; no prompt index trained twice; the
  issued prompt indices have no gaps (a skipped prompt is a silently lost one);
- bounded staleness: 0 <= step - policy_version <= max_staleness for every trained group;
- versions monotone: per-step policy versions rise by one per step and draft versions never fall,
  except right after a recorded checkpoint restore, which may go back to the restored step only;
- progress: the run reached its last step, and no two consecutive steps of one run segment are
  further apart than `progress_bound_s` (a deadlock detector with a generous bound, not a speed test).
"""

import dataclasses
import math
from typing import Any


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Expectations:
    """What a finished run must show."""

    steps: int
    prompts_per_step: int
    max_staleness: int
    progress_bound_s: float = 120.0


@dataclasses.dataclass(slots=True)
class InvariantReport:
    """Problems found (empty: every invariant held) and the counts they were judged on."""

    problems: list[str] = dataclasses.field(default_factory=list)
    items_lost: int = 0
    """Groups that were issued but neither trained once nor dropped with a reason, plus steps short of
    groups and groups trained twice: what the run silently lost or double-counted."""
    num_trained: int = 0
    num_dropped: int = 0
    drop_reasons: dict[str, int] = dataclasses.field(default_factory=dict)
    max_step_gap_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_run(ledger: dict[str, Any], metrics: list[dict[str, Any]], restores: list[dict[str, Any]],
              expect: Expectations) -> InvariantReport:
    """All invariants on one finished run: `ledger` is ledger.json's content, `metrics` every row of
    metrics.jsonl in file order (rows of steps redone after a restore included), `restores` the
    summary's restore records."""
    report = InvariantReport()
    _exactly_once(ledger, expect, report)
    _staleness(ledger, expect, report)
    _versions(metrics, restores, expect, report)
    _progress(metrics, restores, expect, report)
    return report


def _exactly_once(ledger: dict[str, Any], expect: Expectations, report: InvariantReport) -> None:
    entries = ledger.get("entries", {})
    for violation in ledger.get("violations", []):
        report.problems.append(f"ledger violation: {violation}")
        report.items_lost += 1
    per_step: dict[int, int] = {}
    trained_indices: dict[int, str] = {}
    for prompt_id, entry in entries.items():
        state = entry["state"]
        if state == "trained":
            report.num_trained += 1
            per_step[entry["step"]] = per_step.get(entry["step"], 0) + 1
            other = trained_indices.setdefault(entry["prompt_index"], prompt_id)
            if other != prompt_id:
                report.problems.append(f"prompt index {entry['prompt_index']} trained twice ({other}, {prompt_id})")
                report.items_lost += 1
        elif state == "dropped" and entry.get("reason"):
            report.num_dropped += 1
            report.drop_reasons[entry["reason"]] = report.drop_reasons.get(entry["reason"], 0) + 1
        else:
            report.problems.append(f"{prompt_id}: {state} at the end of the run (reason {entry.get('reason')!r})")
            report.items_lost += 1
    for step in range(expect.steps):
        got = per_step.get(step, 0)
        if got != expect.prompts_per_step:
            report.problems.append(f"step {step} trained {got} groups, expected {expect.prompts_per_step}")
            report.items_lost += abs(expect.prompts_per_step - got)
    extra = sorted(s for s in per_step if not 0 <= s < expect.steps)
    if extra:
        report.problems.append(f"groups trained in steps {extra} outside 0..{expect.steps - 1}")
    indices = sorted(entry["prompt_index"] for entry in entries.values())
    if indices != list(range(len(indices))):
        missing = sorted(set(range(indices[-1] + 1 if indices else 0)) - set(indices))
        report.problems.append(f"issued prompt indices have gaps or repeats (missing {missing[:10]})")
        report.items_lost += len(missing)


def _staleness(ledger: dict[str, Any], expect: Expectations, report: InvariantReport) -> None:
    for prompt_id, entry in ledger.get("entries", {}).items():
        if entry["state"] != "trained":
            continue
        lag = entry["step"] - entry["policy_version"]
        if not 0 <= lag <= expect.max_staleness:
            report.problems.append(f"{prompt_id}: trained in step {entry['step']} from policy version "
                                   f"{entry['policy_version']} (bound {expect.max_staleness})")


def _versions(metrics: list[dict[str, Any]], restores: list[dict[str, Any]], expect: Expectations,
              report: InvariantReport) -> None:
    restored_steps = [r["step"] for r in restores]
    prev_step, prev_draft = -1, 0
    for row in metrics:
        step, version, draft = row["step"], row["policy_version"], row["draft_version"]
        if version != step + 1:
            report.problems.append(f"step {step} published policy version {version}, expected {step + 1}")
        if step != prev_step + 1:
            if step <= prev_step and step in restored_steps:
                restored_steps.remove(step)  # each restore explains one step going back, once
            else:
                report.problems.append(f"step {step} follows step {prev_step} without a recorded restore to it")
        elif draft < prev_draft:
            report.problems.append(f"draft version went back from {prev_draft} to {draft} at step {step}")
        prev_step, prev_draft = step, draft
    if prev_step != expect.steps - 1:
        report.problems.append(f"the last step recorded is {prev_step}, expected {expect.steps - 1}")


def _progress(metrics: list[dict[str, Any]], restores: list[dict[str, Any]], expect: Expectations,
              report: InvariantReport) -> None:
    restart_times = sorted(r["at"] for r in restores if "at" in r)
    gap = 0.0
    for before, after in zip(metrics, metrics[1:]):
        if any(before["time"] < t <= after["time"] for t in restart_times):
            continue  # a crash and restart lies between: not one segment
        gap = max(gap, after["time"] - before["time"])
    report.max_step_gap_s = gap
    if gap > expect.progress_bound_s:
        report.problems.append(f"{gap:.1f}s between two steps (bound {expect.progress_bound_s:.0f}s): stalled")


FINGERPRINT_TOL = {"parameters": 1e-6, "optimizer": 2e-5}
"""Relative tolerance per fingerprint key (others: 1e-9). Two undisturbed tiny runs differ by up to
4e-9 in the parameter sum and 2e-6 in the Adam-moment sum (measured; most likely because the
rollout engine batches sequences as they arrive, so behaviour logprobs differ in their last bits:
same tokens and rewards, different float rounding). A run on other prompts
differs by 9e-4 and by 30x; so the bounds leave 250x and 10x above the noise."""


def weights_match(fingerprint: dict[str, float], baseline: dict[str, float]) -> bool:
    """Learner fingerprints (parameter and optimizer sums) equal within FINGERPRINT_TOL."""
    return set(fingerprint) == set(baseline) and all(
        math.isclose(fingerprint[k], baseline[k], rel_tol=FINGERPRINT_TOL.get(k, 1e-9), abs_tol=1e-9)
        for k in baseline)
