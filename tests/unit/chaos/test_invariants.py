"""The chaos invariant checker on hand-made runs: a clean run passes, and each kind of loss,
double count, staleness, version or liveness violation is caught."""

import copy

import pytest

from rollspec.chaos.invariants import Expectations, check_run, weights_match
from rollspec.chaos.schedule import ENDS_RUN, Fault, draw

EXPECT = Expectations(steps=2, prompts_per_step=2, max_staleness=0, progress_bound_s=60.0)


def entry(index, *, state="trained", step=None, version=None, reason=""):
    step = index // 2 if step is None and state == "trained" else step
    return {"prompt_index": index, "group_size": 2, "state": state, "step": step,
            "policy_version": step if version is None else version, "reason": reason, "sample_reasons": ["", ""]}


def clean_run():
    ledger = {"entries": {f"p{i}": entry(i) for i in range(4)}, "violations": []}
    metrics = [{"step": s, "policy_version": s + 1, "draft_version": s, "time": 100.0 + 10 * s} for s in range(2)]
    return ledger, metrics, []


def test_a_clean_run_passes():
    report = check_run(*clean_run(), EXPECT)
    assert report.ok, report.problems
    assert (report.items_lost, report.num_trained) == (0, 4)


def test_dropped_with_a_reason_is_accounted_for():
    ledger, metrics, restores = clean_run()
    ledger["entries"]["p4"] = entry(4, state="dropped", reason="stale")
    report = check_run(ledger, metrics, restores, EXPECT)
    assert report.ok and report.drop_reasons == {"stale": 1}


@pytest.mark.parametrize("damage, expected", [
    (lambda l, m: l["entries"].__setitem__("p4", entry(4, state="issued")), "issued at the end"),
    (lambda l, m: l["entries"].__setitem__("p4", entry(4, state="dropped")), "dropped at the end"),
    (lambda l, m: l["entries"].__setitem__("p3", entry(3, state="dropped", reason="stale")), "step 1 trained 1"),
    (lambda l, m: l["entries"].__setitem__("p9", entry(3, step=1)), "trained twice"),
    (lambda l, m: l["entries"].__setitem__("p5", entry(5, state="dropped", reason="x")), "gaps"),
    (lambda l, m: l["violations"].append("p0: resolved but already trained"), "ledger violation"),
])
def test_lost_or_double_counted_groups_fail(damage, expected):
    ledger, metrics, restores = clean_run()
    damage(ledger, metrics)
    report = check_run(ledger, metrics, restores, EXPECT)
    assert not report.ok and report.items_lost > 0
    assert any(expected in p for p in report.problems), report.problems


def test_a_group_older_than_the_staleness_bound_fails():
    ledger, metrics, restores = clean_run()
    ledger["entries"]["p3"]["policy_version"] = 0  # trained in step 1 from version 0
    assert any("bound 0" in p for p in check_run(ledger, metrics, restores, EXPECT).problems)
    assert check_run(ledger, metrics, restores, Expectations(steps=2, prompts_per_step=2, max_staleness=1)).ok


def test_versions_may_go_back_only_to_a_recorded_restore():
    ledger, metrics, _ = clean_run()
    redo = [*metrics, copy.deepcopy(metrics[1])]  # step 1 ran, the run died before its checkpoint, step 1 again
    redo[-1]["time"] = 200.0
    assert any("without a recorded restore" in p for p in check_run(ledger, redo, [], EXPECT).problems)
    restore = [{"step": 1, "policy_version": 1, "at": 150.0}]
    assert check_run(ledger, redo, restore, EXPECT).ok
    backwards = copy.deepcopy(metrics)
    backwards[1]["draft_version"] = -1
    assert any("draft version went back" in p for p in check_run(ledger, backwards, [], EXPECT).problems)


def test_a_stall_or_an_unfinished_run_fails():
    ledger, metrics, restores = clean_run()
    metrics[1]["time"] = metrics[0]["time"] + 61.0
    assert any("stalled" in p for p in check_run(ledger, metrics, restores, EXPECT).problems)
    # the same gap across a restart is two segments, not a stall
    assert check_run(ledger, metrics, [{"step": 1, "at": metrics[0]["time"] + 1}], EXPECT).ok
    assert any("last step recorded" in p for p in check_run(ledger, metrics[:1], restores, EXPECT).problems)


def test_weights_match_within_tolerance_only():
    base = {"parameters": 12.5, "optimizer": 3.0, "step": 4.0}
    assert weights_match(dict(base), base)
    assert not weights_match({**base, "parameters": 12.5 * (1 + 1e-5)}, base)
    assert weights_match({**base, "optimizer": 3.0 * (1 + 2e-6)}, base)  # the run-to-run noise of the moments
    assert not weights_match({**base, "optimizer": 3.0 * (1 + 1e-4)}, base)
    assert not weights_match({**base, "step": 5.0}, base)
    assert not weights_match({"parameters": 12.5}, base)


def test_soak_draws_are_reproducible_and_end_the_run_at_most_once():
    for seed in range(50):
        drawn = draw(seed, steps=4)
        assert drawn == draw(seed, steps=4)
        assert sum(f.kind in ENDS_RUN for f in drawn.faults) <= 1
        assert all(1 <= f.at_step < 4 for f in drawn.faults)
    assert len({draw(seed, steps=4) for seed in range(10)}) == 10


def test_fault_rejects_unknown_kinds():
    with pytest.raises(ValueError, match="not one of"):
        Fault(kind="unplug", at_step=1)
