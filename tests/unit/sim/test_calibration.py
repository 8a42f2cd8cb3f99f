"""calibrate() on synthetic measurements: hand-computable runs reproduced exactly, the rest closely; bad input named."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from rollspec.sim.calibration import calibrate, measured_replica
from rollspec.sim.lengths import LengthDistribution
from rollspec.sim.measured import MeasurementError, load_measured
from rollspec.sim.pipeline import simulate_pipeline
from rollspec.sim.speculation import Speculation
from rollspec.sim.training import TrainingConfig

EXAMPLE = Path(__file__).resolve().parents[3] / "rollspec" / "sim" / "scenarios" / "measured-example.json"
BATCHES = (1, 2, 4, 8)


def _c(b, q):
    return 0.01 + 0.001 * b + 0.0005 * b * (q - 1)


def _doc():
    """8 rows of 10 tokens each: every plain run is arithmetic."""
    return {
        "schema": "rollspec.sim.measured/v1", "machine": "synthetic", "model": "synthetic",
        "prompt_tokens": 4, "max_num_seqs": 8, "k_max": 4, "fixed_k": 2,
        "cost": {"context_kind": "longest",
                 "levels": [{"context_tokens": 10, "target_s": [[b, q, _c(b, q)] for b in BATCHES for q in (1, 3, 5)],
                             "draft_s": [[b, 0.002] for b in BATCHES]}],
                 "prefill_s": [[1, 0.02], [8, 0.02]]},
        "acceptance": [0.8, 0.7, 0.6, 0.5],
        "response_lengths": [10],
        "training": {"prompts_per_step": 2, "group_size": 4, "reward_s": 0.01, "learner_fixed_s": 0.1,
                     "learner_s_per_token": 1e-4, "weight_sync_s": 0.05},
        "drains": [], "steps": [],
    }


def test_hand_computed_plain_runs_are_reproduced_exactly():
    doc = _doc()
    drain_s = 0.02 + 9 * _c(8, 1)  # prefill emits the first token, then 9 decode steps at B = 8
    step_s = drain_s + 0.01 + (0.1 + 1e-4 * 8 * (10 + 4)) + 0.05
    doc["drains"] = [{"name": "drain_plain", "speculation": "plain", "lengths": [10] * 8, "measured_s": drain_s}]
    doc["steps"] = [{"name": "sync_plain", "speculation": "plain", "max_staleness": 0, "colocated": False,
                     "num_steps": 4, "measured_step_s": step_s}]
    report = calibrate(doc)
    assert [row.name for row in report.rows] == ["drain_plain", "sync_plain"]
    assert report.max_error < 1e-9
    assert set(report.missing) == {"steps: sync_spec not measured", "steps: async_plain not measured",
                                   "steps: async_spec not measured"}


def test_speculative_and_async_runs_are_reproduced_from_independent_draws():
    doc = _doc()
    doc["response_lengths"] = [6, 10, 14, 20, 30, 45]
    m = load_measured(doc)
    steps = []
    for name, mode, staleness in (("sync_spec", Speculation.ADAPTIVE, 0), ("async_plain", Speculation.PLAIN, 2),
                                  ("async_spec", Speculation.FIXED, 2)):
        training = TrainingConfig(prompts_per_step=2, group_size=4, reward_s=0.01, learner_fixed_s=0.1,
                                  learner_s_per_token=1e-4, weight_sync_s=0.05, max_staleness=staleness)
        # "Measured" with seeds calibrate() does not use: the same model, other random draws.
        measured = np.mean([simulate_pipeline(replica=measured_replica(m, mode, 50 + seed),
                                              lengths=LengthDistribution.empirical(m.response_lengths),
                                              training=training, prompt_tokens=4, num_steps=12,
                                              rng=np.random.default_rng(5000 + seed)).mean_step_s
                            for seed in range(3)])
        steps.append({"name": name, "speculation": mode.value, "max_staleness": staleness, "colocated": False,
                      "num_steps": 12, "measured_step_s": float(measured)})
    doc["steps"] = steps
    report = calibrate(doc)
    assert report.max_error < 0.1, report.as_dict()


def test_a_wrong_prediction_shows_as_error():
    doc = _doc()
    doc["drains"] = [{"name": "d", "speculation": "plain", "lengths": [10] * 8, "measured_s": 2 * (0.02 + 9 * _c(8, 1))}]
    assert calibrate(doc).max_error == pytest.approx(0.5)


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.pop("acceptance"), "acceptance"),
    (lambda d: d.update(schema="v0"), "schema"),
    (lambda d: d["cost"].update(context_kind="median"), "context_kind"),
    (lambda d: d["cost"]["levels"][0].update(target_s=[[1, 1]]), "target_s"),
    (lambda d: d.update(acceptance=[0.5]), "acceptance needs"),
    (lambda d: d.update(drains=[{"name": "x", "speculation": "eagle", "lengths": [3], "measured_s": 1.0}]),
     "speculation must be"),
    (lambda d: d["training"].pop("weight_sync_s"), "weight_sync_s"),
])
def test_a_bad_document_is_rejected_with_the_offending_field(edit, match):
    doc = copy.deepcopy(_doc())
    edit(doc)
    with pytest.raises(MeasurementError, match=match):
        load_measured(doc)


def test_the_shipped_example_follows_the_schema():
    report = calibrate(json.loads(EXAMPLE.read_text()), num_seeds=1)
    assert len(report.rows) == 4 and all(np.isfinite(row.predicted_s) and row.predicted_s > 0 for row in report.rows)
