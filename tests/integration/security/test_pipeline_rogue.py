"""`rollspec train` with security.curve=on, attacked by a process without the run's keys that finds
the run's ZeroMQ endpoints itself (scanning the run's process tree for sockets that speak ZMTP) and
tries every queue and weight channel on each, plus garbage and floods. The run trains exactly what
an undisturbed run trains, and the driver's broker counts the refused peers. (Slow: two real runs.)
"""

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import security_workers as sw  # noqa: E402

from rollspec.launch.config import load_config  # noqa: E402
from rollspec.launch.run_dir import LEDGER_FILE  # noqa: E402
from rollspec.launch.train import train  # noqa: E402

TINY = Path(__file__).resolve().parents[3] / "configs" / "tiny.yaml"
STEPS, PROMPTS_PER_STEP = 6, 4


def _config(tiny_models, root: Path, name: str):
    return load_config(TINY, [
        f"models.policy={tiny_models['policy']}", f"models.draft={tiny_models['draft']}", f"run.root={root}",
        f"run.name={name}", "run.progress=false", f"algorithm.steps={STEPS}",
        f"algorithm.prompts_per_step={PROMPTS_PER_STEP}", "algorithm.group_size=2", "algorithm.max_new_tokens=16",
        "rollout.max_batch_size=8", "rollout.max_seq_len=64", "learner.zero_stage=1", "learner.micro_batch_size=4",
        "checkpoint.every_steps=2", "security.curve=on"])


def _trained_per_step(summary) -> dict[int, int]:
    entries = json.loads((Path(summary["run_dir"]) / LEDGER_FILE).read_text())["entries"]
    per_step: dict[int, int] = {}
    for entry in entries.values():
        if entry["state"] == "trained":
            per_step[entry["step"]] = per_step.get(entry["step"], 0) + 1
    return per_step


@pytest.mark.slow
def test_a_real_run_under_attack_trains_what_an_undisturbed_run_trains(ray_session, tiny_models, tmp_path):
    calm = train(_config(tiny_models, tmp_path, "calm"))
    report, stop = sw.CTX.Queue(), sw.CTX.Event()
    rogue = sw.CTX.Process(target=sw.pipeline_rogue, args=(os.getpid(), report, stop), daemon=True)
    rogue.start()
    try:
        attacked = train(_config(tiny_models, tmp_path, "attacked"))
    finally:
        stop.set()
        outcome = report.get(timeout=120)[1]
        rogue.join(30)
        if rogue.is_alive():
            rogue.kill()
    print(f"rogue: {outcome}; refused by the broker: {attacked['refused_peers']}")
    for summary in (calm, attacked):
        assert summary["ledger_problems"] == [] and summary["steps"] == STEPS
        assert _trained_per_step(summary) == {step: PROMPTS_PER_STEP for step in range(STEPS)}
    assert (attacked["policy_version"], attacked["groups"]["trained"]) == (calm["policy_version"],
                                                                          calm["groups"]["trained"])
    assert len(outcome["endpoints"]) >= 2, outcome  # found at least the broker and the policy publisher
    assert outcome["prompts_taken"] == outcome["weights_seen"] == outcome["puts_confirmed"] == 0, outcome
    assert calm["refused_peers"] == {} and sum(attacked["refused_peers"].values()) > 0, attacked["refused_peers"]
