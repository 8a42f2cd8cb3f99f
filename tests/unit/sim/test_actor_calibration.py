"""calibrate_actor_runs: the sync fit recovers a known engine scale and overhead; async rows are predicted, not fitted."""

import copy
from pathlib import Path

import pytest

from rollspec.sim.actor_calibration import calibrate_actor_runs, load_actor_runs
from rollspec.sim.measured import MeasurementError

SCENARIOS = Path(__file__).resolve().parents[3] / "rollspec" / "sim" / "scenarios"
BATCHES = (1, 2, 4, 8)
TIMERS = dict(reward_s=0.02, train_s=0.3, publish_s=0.05, learner_wait_s=0.0, weight_sync_s=0.0, generate_s=0.0)


def _c(b, q):
    return 0.01 + 0.001 * b + 0.0005 * b * (q - 1)


def _doc(sync_step_s, engine_s, async_step_s):
    """8 rows of 10 tokens, one batch a step: plain sync steps are arithmetic."""
    run = dict(speculation="plain", acceptance=[], swap_s=0.04)
    return {
        "schema": "rollspec.sim.actor-runs/v1", "machine": "synthetic", "model": "synthetic",
        "prompt_tokens": 4, "max_num_seqs": 8, "k_max": 2, "prompts_per_step": 2, "group_size": 4,
        "cost": {"target_s": [[b, q, _c(b, q)] for b in BATCHES for q in (1, 3)],
                 "draft_s": [[b, 0.002] for b in BATCHES]},
        "response_lengths": [10],
        "runs": [{**run, "name": "sync_plain", "max_staleness": 0,
                  "means": {**TIMERS, "step_s": sync_step_s, "engine_s": engine_s}},
                 {**run, "name": "async_plain", "max_staleness": 1,
                  "means": {**TIMERS, "step_s": async_step_s, "engine_s": engine_s}}],
    }


# prefill priced as the widest profiled verify per token x the prompt, then 9 decode steps at B = 8
ENGINE_S = _c(8, 3) * 4 / 3 + 9 * _c(8, 1)


def test_the_sync_fit_recovers_scale_and_overhead_and_reproduces_the_sync_step():
    scale, overhead = 1.7, 0.11
    sync_step = scale * ENGINE_S + 0.02 + 0.3 + 0.05 + 0.04 + overhead
    report = calibrate_actor_runs(_doc(sync_step, scale * ENGINE_S, 0.5), num_seeds=1)
    assert report.engine_scale == pytest.approx(scale, rel=1e-9)
    assert report.overhead_s == pytest.approx(overhead, rel=1e-9)
    assert [row.name for row in report.fit] == ["sync_plain"] and report.fit[0].error < 1e-9
    assert [row.name for row in report.heldout] == ["async_plain"]


def test_async_is_predicted_from_the_sync_fit_and_a_wrong_measurement_shows_as_error():
    scale, overhead = 1.7, 0.11
    engine = scale * ENGINE_S
    sync_step = engine + 0.02 + 0.3 + 0.05 + 0.04 + overhead
    predicted = calibrate_actor_runs(_doc(sync_step, engine, 1.0), num_seeds=1).heldout[0].predicted_s
    # Overlap: the learner (0.35 s) trains while the next batch generates, so the step is shorter than sync,
    # but never shorter than the learner or the rollout's own work (drain + weight swap) alone.
    assert max(0.35, engine + 0.04) - 1e-9 <= predicted < sync_step
    good = calibrate_actor_runs(_doc(sync_step, engine, predicted), num_seeds=1)
    bad = calibrate_actor_runs(_doc(sync_step, engine, 1.5 * predicted), num_seeds=1)
    assert good.heldout_max_error < 1e-9 and bad.heldout_max_error == pytest.approx(1 / 3, rel=1e-6)
    assert bad.max_error == bad.heldout_max_error


def test_bad_documents_are_named():
    doc = _doc(1.0, 0.5, 0.5)
    with pytest.raises(MeasurementError, match="schema"):
        load_actor_runs({**doc, "schema": "other"})
    broken = copy.deepcopy(doc)
    del broken["runs"][0]["means"]["train_s"]
    with pytest.raises(MeasurementError, match="train_s"):
        load_actor_runs(broken)
    speculative = copy.deepcopy(doc)
    speculative["runs"][0]["speculation"] = "adaptive"
    with pytest.raises(MeasurementError, match="acceptance"):
        load_actor_runs(speculative)
    no_sync = copy.deepcopy(doc)
    no_sync["runs"] = no_sync["runs"][1:]
    with pytest.raises(MeasurementError, match="synchronous"):
        calibrate_actor_runs(no_sync)


def test_fitted_elsewhere_holds_out_every_run_and_sync_timers_replace_the_async_runs_own():
    scale, overhead = 1.7, 0.11
    engine = scale * ENGINE_S
    sync_step = engine + 0.02 + 0.3 + 0.05 + 0.04 + overhead
    doc = _doc(sync_step, engine, 1.0)
    elsewhere = calibrate_actor_runs(doc, num_seeds=1, fitted=(scale, overhead))
    assert not elsewhere.fit and [row.name for row in elsewhere.heldout] == ["sync_plain", "async_plain"]
    assert elsewhere.heldout[0].error < 1e-9
    # An async run whose own learner was 3x slower (contention) is predicted slower from its own timers only.
    doc["runs"][1]["means"]["train_s"] = 0.9
    own = calibrate_actor_runs(doc, num_seeds=1).heldout[0].predicted_s
    from_sync = calibrate_actor_runs(doc, num_seeds=1, timers_from_sync=True).heldout[0].predicted_s
    assert own >= 0.95 > from_sync


@pytest.mark.parametrize("name", ["tiny-pipeline-measured.json", "tiny-pipeline-measured-no-refresh.json"])
def test_the_committed_actor_runs_are_predicted_within_the_target(name):
    # bench/pipeline.py's runs of 2026-11-26 (see BENCHMARKS.md, Simulator): a simulator change that breaks
    # the fit of the sync runs or the held-out async prediction shows here.
    report = calibrate_actor_runs(SCENARIOS / name)
    assert [row.name for row in report.fit] == ["sync_plain", "sync_speculative"]
    assert [row.name for row in report.heldout] == ["async_plain", "async_speculative"]
    assert report.max_error < 0.15
