"""`rollspec report RUN_DIR`: figures and markdown from a run directory's metrics.jsonl."""

import json

import yaml

from rollspec.launch.cli import main
from rollspec.launch.report import FIGURES, REPORT_DIR, REPORT_FILE

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def step_record(step: int) -> dict:
    """One learner step as step_metrics writes it (values vary so every curve has a shape)."""
    return {"step": step, "time": 1.0e9 + step, "policy_version": step + 1, "draft_version": step // 2,
            "reward_mean": 0.1 + 0.05 * step, "num_groups": 4, "num_samples": 8, "groups_with_signal": step % 4,
            "sample_drops": {"length": 1} if step == 3 else {}, "acceptance_length": 1.5 + 0.1 * step,
            "staleness_max": step % 2, "staleness_mean": 0.5 * (step % 2), "staleness_violations": 0,
            "staleness_counts": {"0": 3, "1": 1} if step % 2 else {"0": 4}, "generate_s": 1.0, "reward_s": 0.1,
            "step_s": 2.0 + 0.1 * step, "weight_sync_s": 0.2, "learner_wait_s": 1.2, "train_s": 0.4,
            "publish_s": 0.1, "draft_refresh_s": 0.3, "rollout_tokens": 500, "rollout_tokens_per_s": 900.0 + step,
            "step_accepted_per_position": [8, 4, 2], "step_drafted_per_position": [10, 8, 8],
            "step_num_steps_by_k": [1, 0, 3, 6], "chosen_k_mean": 2.3, "queue_depths": {"prompts": 0}}


def make_run(tmp_path, steps=9, *, config=True, summary=True):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(step_record(s)) + "\n" for s in range(steps)))
    if config:
        (run / "config.yaml").write_text(yaml.safe_dump({"algorithm": {"max_staleness": 1, "prompts_per_step": 4,
                                                                       "group_size": 2},
                                                         "rollout": {"drafter": "draft_model", "depth": "adaptive",
                                                                     "k": 3}}))
    if summary:
        (run / "summary.json").write_text(json.dumps({"wall_s": 30.0, "startup_s": 9.0, "ledger_problems": [],
                                                      "groups": {"trained": 36, "dropped": 1, "issued": 0},
                                                      "heldout": {"initial": {"reward_mean": 0.5, "num_samples": 40},
                                                                  "final": {"reward_mean": 0.6, "num_samples": 40}},
                                                      "actor_restarts": {"rollout-0": 1, "reward-0": 0}}))
    return run


def test_report_draws_every_figure_and_tables_the_numbers(tmp_path, capsys):
    run = make_run(tmp_path)
    assert main(["report", str(run)]) == 0
    out = run / REPORT_DIR
    assert capsys.readouterr().out.strip() == str(out / REPORT_FILE)
    for name, _ in FIGURES:
        data = (out / f"{name}.png").read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, name
    text = (out / REPORT_FILE).read_text()
    rows = {cells[0].strip(): cells[1].strip() for cells in
            (line.strip("|").split(" | ") for line in text.splitlines() if line.startswith("| "))}
    assert rows["learner steps"].strip() == "9"
    assert rows["acceptance length (mean over steps)"].strip() == f"{1.5 + 0.1 * 4:.2f}"
    assert rows["acceptance rate by draft position"].strip() == "0.80, 0.50, 0.25"
    assert rows["reward, first third -> last third"].strip() == f"{0.15:.3f} -> {0.45:.3f}"
    assert rows["staleness, max over the run"].strip() == "1"
    assert rows["actor restarts"].strip() == "rollout-0 1"
    assert rows["samples dropped in trained groups"].strip() == "length 1"
    assert rows["prompt groups trained / dropped"] == "36 / 1"
    assert rows["held-out reward, starting -> final weights"] == "0.500 -> 0.600 (40 samples)"
    assert "drafter `draft_model`" in text and all(f"]({name}.png)" in text for name, _ in FIGURES)


def test_report_of_a_run_still_going_and_of_an_older_run(tmp_path):
    """No summary.json / config.yaml yet, and records without the newer fields: still a full report."""
    run = make_run(tmp_path, steps=2, config=False, summary=False)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for record in lines:
        for key in ("step_accepted_per_position", "step_drafted_per_position", "step_num_steps_by_k",
                    "chosen_k_mean", "staleness_counts", "draft_refresh_s"):
            record.pop(key)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert main(["report", str(run)]) == 0
    text = (run / REPORT_DIR / REPORT_FILE).read_text()
    assert "the run has not finished" in text and "| acceptance rate by draft position | no drafts |" in text
    assert all((run / REPORT_DIR / f"{name}.png").is_file() for name, _ in FIGURES)


def test_report_refuses_a_directory_without_step_metrics(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "metrics.jsonl is missing or empty" in capsys.readouterr().err
