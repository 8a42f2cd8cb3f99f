"""The driver's progress display: a bar with ETA and the key numbers, and one line per step."""

import io

from rich.console import Console

from rollspec.launch.progress import StepProgress, step_line


def metrics(step: int) -> dict:
    return {"step": step, "reward_mean": 0.625, "acceptance_length": 2.25, "chosen_k_mean": 1.5,
            "rollout_tokens_per_s": 1234.0, "staleness_max": 0, "policy_version": step + 1, "draft_version": step,
            "step_s": 2.5, "weight_sync_s": 0.1, "generate_s": 1.0, "reward_s": 0.1, "learner_wait_s": 1.2,
            "train_s": 0.9, "publish_s": 0.05, "draft_refresh_s": 0.4, "sample_drops": {"length": 2}}


def test_the_bar_shows_progress_eta_and_the_key_numbers():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200, color_system=None)
    with StepProgress(10, console=console) as progress:
        for step in range(3):
            progress.update(metrics(step))
    text = out.getvalue()
    assert "3/10" in text and "eta" in text
    assert "reward 0.625 acc_len 2.25 k 1.5 1234 tok/s 2.5 s/step" in text
    assert text.count("step    3  reward 0.625") == 1  # one line per step, above the bar


def test_on_a_narrow_terminal_the_counts_and_eta_stay_whole():
    out = io.StringIO()
    console = Console(file=out, width=80, color_system=None)  # not a terminal: what `ray job logs` shows
    with StepProgress(30, console=console) as progress:
        for step in range(12):
            progress.update(metrics(step))
    bar = [line for line in out.getvalue().splitlines() if line.startswith("train")][-1]
    assert "12/30" in bar and "eta" in bar and "…" not in bar.split("eta")[0]


def test_a_step_line_carries_the_breakdown_and_tolerates_older_records():
    line = step_line(metrics(0))
    assert "gen 1.00" in line and "train 0.90" in line and "draft refresh 0.40" in line and "drops length=2" in line
    old = {k: v for k, v in metrics(0).items() if k not in ("chosen_k_mean", "draft_refresh_s")}
    assert "k 0.0" in step_line(old)
