"""The actor pipeline for real: Ray actors, ZMQ queues and weight broadcasts, a DeepSpeed learner,
tiny random models. Sync and async runs, a resume, a reward function that fails in every way, and a
run stopped by SIGTERM (it checkpoints where it is, exits 128 + signal; --resume finishes it)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rollspec.actors.checkpoints import CheckpointStore
from rollspec.actors.draft_checkpoint import load_draft, load_trainer, weights_digest
from rollspec.engine.loader import read_safetensors
from rollspec.launch.config import load_config
from rollspec.launch.run_dir import LEDGER_FILE, SUMMARY_FILE
from rollspec.launch.train import train

REPO = Path(__file__).resolve().parents[3]
TINY = REPO / "configs" / "tiny.yaml"

FLAKY_REWARD = textwrap.dedent("""
    import math, time, zlib
    from rollspec.rl.tasks import reward

    def flaky(prompt, response):
        kind = zlib.crc32((prompt + response).encode()) % 5
        if kind == 0:
            raise ValueError("no reward for you")
        if kind == 1:
            return math.nan
        if kind == 2:
            return "one"
        if kind == 3:
            time.sleep(30)
        return reward(prompt, response)
""")


def ledger_of(summary) -> dict:
    return json.loads((Path(summary["run_dir"]) / LEDGER_FILE).read_text())["entries"]


def check_invariants(summary, *, steps, prompts_per_step, max_staleness) -> dict:
    """Invariants 2-4 on a finished run; returns the ledger entries."""
    entries = ledger_of(summary)
    assert summary["ledger_problems"] == []
    trained = {pid: e for pid, e in entries.items() if e["state"] == "trained"}
    assert all(e["state"] in ("trained", "dropped") and (e["state"] == "trained" or e["reason"])
               for e in entries.values())
    per_step = {}
    for entry in trained.values():
        per_step[entry["step"]] = per_step.get(entry["step"], 0) + 1
        assert 0 <= entry["step"] - entry["policy_version"] <= max_staleness
        assert len(entry["sample_reasons"]) == entry["group_size"]
    assert per_step == {step: prompts_per_step for step in range(steps)}
    assert len({e["prompt_index"] for e in trained.values()}) == len(trained)  # no prompt trained twice
    return entries


# Steps of the sync run. Its draft assertions need the refresh actor's first version (after step 0's samples and
# policy version 1) to reach a rollout step: with 3 steps, on a 2-core machine running two test suites, the run once
# ended first (draft_version 0); a fourth step gives the refresh a step's time more.
SYNC_STEPS = 4


@pytest.fixture(scope="module")
def sync_run(ray_session, tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    overrides = [f"models.policy={tiny_models['policy']}", f"models.draft={tiny_models['draft']}",
                 f"run.root={root}", "run.name=sync", "run.progress=false", f"algorithm.steps={SYNC_STEPS}",
                 "algorithm.prompts_per_step=4", "algorithm.group_size=2", "algorithm.max_new_tokens=16",
                 "rollout.max_batch_size=8", "rollout.max_seq_len=64", "rollout.depth=adaptive", "rollout.k=3",
                 "learner.zero_stage=1", "learner.micro_batch_size=4", "checkpoint.every_steps=2",
                 "draft_refresh.batch_size=4",  # 8 samples a step: the first refresh needs 2 x 4 of them
                 "data.heldout_prompts=4", "data.heldout_samples=2"]
    return train(load_config(TINY, overrides)), overrides


def test_sync_run_trains_every_prompt_once_on_the_version_it_was_generated_with(sync_run):
    summary, _ = sync_run
    entries = check_invariants(summary, steps=SYNC_STEPS, prompts_per_step=4, max_staleness=0)
    assert summary["steps"] == SYNC_STEPS and summary["policy_version"] == SYNC_STEPS
    # versions advance in trajectories
    assert sorted({e["policy_version"] for e in entries.values()}) == list(range(SYNC_STEPS))
    assert summary["samples"] == {"trained": 8 * SYNC_STEPS}
    metrics = [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert [m["policy_version"] for m in metrics] == list(range(1, SYNC_STEPS + 1))
    # The rollout actors generated step t's groups with version t: new weights reached them, and the
    # draft-refresh actor's versions reached them too.
    assert [m["rollout_policy_versions"][0] >= m["step"] for m in metrics] == [True] * SYNC_STEPS
    assert max(r["num_policy_swaps"] for r in summary["rollouts"]) >= 2
    assert summary["draft_version"] >= 1 and summary["rollouts"][0]["num_draft_swaps"] >= 1
    assert all(m["staleness_violations"] == 0 and m["acceptance_length"] >= 1.0 for m in metrics)
    assert summary["cost_profiles"][0]["target_ms"]  # adaptive depth profiled the engine at start-up
    heldout = summary["heldout"]  # the driver scored the starting and the final weights on the same requests
    assert heldout["initial"]["num_samples"] == heldout["final"]["num_samples"] == 8


def test_resume_restores_step_versions_and_optimizer_then_continues(sync_run):
    summary, overrides = sync_run
    checkpoint = Path(summary["run_dir"]) / "checkpoints"
    saved = json.loads((checkpoint / f"step_{SYNC_STEPS:08d}" / "controller.json").read_text())
    resumed = train(load_config(TINY, [*overrides, f"algorithm.steps={SYNC_STEPS + 1}"]), resume=True)
    (restore,) = resumed["restores"]
    assert (restore["step"], restore["policy_version"], restore["draft_version"]) == \
           (SYNC_STEPS, SYNC_STEPS, saved["draft_version"])
    assert restore["fingerprint"] == saved["learner_fingerprint"]  # parameters and optimizer state came back
    assert restore["checkpoint"].endswith(f"step_{SYNC_STEPS:08d}")
    check_invariants(resumed, steps=SYNC_STEPS + 1, prompts_per_step=4, max_staleness=0)
    assert resumed["steps"] == SYNC_STEPS + 1 and resumed["policy_version"] == SYNC_STEPS + 1


def test_resume_starts_from_the_checkpointed_draft_weights_not_the_drafter_on_disk(sync_run, tiny_models):
    summary, overrides = sync_run
    store = CheckpointStore(Path(summary["run_dir"]) / "checkpoints")
    step, controller = store.latest()  # SYNC_STEPS, or one more after the resume test above
    saved, weights = load_draft(store.draft_dir(step))  # in the manifest: --resume verifies it with the rest
    assert saved.drafter == "draft_model" and saved.draft_version == controller["draft_version"] >= 1
    on_disk = weights_digest(read_safetensors(tiny_models["draft"]))
    assert weights_digest(weights) != on_disk  # a refreshed draft was saved, not the one on disk
    trainer, buffer = load_trainer(store.draft_dir(step))  # and what the distiller had reached it with
    assert trainer.optimizer_steps >= 1 and len(buffer) >= 8
    resumed = train(load_config(TINY, [*overrides, f"algorithm.steps={step + 1}"]), resume=True)
    assert resumed["restores"][-1]["draft_restored"] is True
    initial = resumed["refresh"]["initial_draft"]  # what the new draft-refresh actor published first
    assert (initial["draft_version"], initial["sha256"]) == (saved.draft_version, weights_digest(weights))
    assert initial["trainer_restored"] == {"optimizer_steps": trainer.optimizer_steps, "buffered": len(buffer)}
    assert resumed["rollouts"][0]["num_draft_swaps"] >= 1 and resumed["draft_version"] >= saved.draft_version


def test_resume_without_draft_refresh_keeps_the_refreshed_draft(sync_run):
    summary, overrides = sync_run
    store = CheckpointStore(Path(summary["run_dir"]) / "checkpoints")
    step, _ = store.latest()
    saved, _ = load_draft(store.draft_dir(step))
    assert saved.draft_version >= 1
    resumed = train(load_config(TINY, [*overrides, f"algorithm.steps={step + 1}", "draft_refresh.enabled=false"]),
                    resume=True)
    assert resumed["restores"][-1]["draft_restored"] is True
    # The rollouts drafted with the checkpoint's refreshed draft, under its version (not the drafter on disk, v0).
    assert [r["draft_version"] for r in resumed["rollouts"]] == [saved.draft_version] * len(resumed["rollouts"])
    assert resumed["draft_version"] == saved.draft_version


def test_async_run_with_a_reward_function_that_fails_every_way(ray_session, tiny_overrides, tmp_path, monkeypatch):
    (tmp_path / "flaky_rewards.py").write_text(FLAKY_REWARD)
    monkeypatch.syspath_prepend(str(tmp_path))  # the reward actor gets the driver's import path
    config = load_config(TINY, [*tiny_overrides, "run.name=async", "algorithm.steps=4", "algorithm.max_staleness=1",
                                "rollout.depth=fixed", "rollout.k=2", "reward.function=flaky_rewards:flaky",
                                "reward.timeout_s=0.5"])
    summary = train(config)
    check_invariants(summary, steps=4, prompts_per_step=4, max_staleness=1)
    samples = summary["samples"]
    assert samples.get("reward_error", 0) > 0 and samples.get("trained", 0) > 0
    (reward_actor,) = summary["rewards"]
    assert reward_actor["error"] == "" and reward_actor["num_reward_errors"] >= samples["reward_error"]
    kinds = reward_actor["errors_by_kind"]
    assert {"raised ValueError", "returned nan", "returned a str", "timed out after 0.5s"} <= set(kinds), kinds
    errors = [e["error"] for e in ledger_of(summary).values() if "reward_error" in e["sample_reasons"]]
    assert errors and all(errors)  # every group with a reward error says what it was

TIMEOUT_S = 240


def start_run(overrides: list[str]) -> subprocess.Popen:
    command = [str(Path(sys.executable).parent / "rollspec"), "train", "--config", str(TINY), *overrides]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})


def wait_for_steps(process: subprocess.Popen, metrics: Path, steps: int) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= steps):
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.2)


def test_a_stopped_run_checkpoints_where_it_is_and_resume_finishes_it(ray_session, tiny_overrides, tmp_path):
    stop_signal = signal.SIGTERM  # what `kill`, `ray job stop` and batch schedulers send; Ctrl-C's SIGINT is unit-tested
    overrides = [*tiny_overrides, "run.name=stopped", "algorithm.steps=30", "checkpoint.every_steps=100",
                 "rollout.num_actors=1", "reward.num_actors=1", "draft_refresh.enabled=false"]
    run_dir = tmp_path / "stopped"
    process = start_run(overrides)
    try:
        wait_for_steps(process, run_dir / "metrics.jsonl", 2)
        process.send_signal(stop_signal)
        output, _ = process.communicate(timeout=TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + stop_signal, output
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    stopped = summary["stopped"]
    assert stopped["signal"] == stop_signal.name and 2 <= stopped["step"] < 30, output
    # No periodic checkpoint was due (every 100 steps): the one there is the stop's, at the step reached.
    assert stopped["checkpoint"].endswith(f"step_{stopped['step']:08d}") and Path(stopped["checkpoint"]).is_dir()
    assert summary["ledger_problems"] == [] and "heldout" not in summary
    assert f"stopped by {stop_signal.name} at step {stopped['step']}" in output

    total = stopped["step"] + 2
    resumed = train(load_config(TINY, [*overrides, f"algorithm.steps={total}"]), resume=True)
    (restore,) = resumed["restores"]
    assert restore["step"] == stopped["step"] and restore["checkpoint"] == stopped["checkpoint"]
    assert resumed["counters"].get("reissued_groups", 0) == stopped["outstanding_groups"]
    check_invariants(resumed, steps=total, prompts_per_step=4, max_staleness=0)
