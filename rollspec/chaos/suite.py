"""`rollspec chaos`: scenarios and soak seeds on a private local Ray, one line per run, optional report.

    run_suite(["learner-kill"], soak_seeds=0, workdir=Path("/tmp/chaos"))
"""

import json
import os
import shutil
import time
from pathlib import Path

from rollspec.chaos.runner import ChaosRunner, Outcome
from rollspec.chaos.scenarios import SCENARIOS


def outcome_line(kind: str, outcome: Outcome) -> str:
    data = outcome.as_dict()
    recover = data["recover_s_max"]
    match = {None: "-", True: "yes", False: "NO"}[outcome.weights_match]
    return (f"{kind:<8} {outcome.name:<16} {'PASS' if outcome.passed else 'FAIL'}  actor faults "
            f"{data['actor_faults_recovered']}/{data['actor_faults']} recovered  message faults "
            f"{data['message_faults_injected']:>5}  items lost {outcome.items_lost}  recover "
            f"{'-' if recover is None else f'{recover:.1f}s'}  weights match {match}  "
            f"segments {outcome.segments}  {outcome.wall_s:.0f}s" + "".join(f"\n    {p}" for p in outcome.problems))


def run_suite(names: list[str], *, soak_seeds: int, workdir: Path, steps: int = 4,
              report_path: Path | None = None, command: str = "") -> dict:
    """Run `names` (scenario names) and soak seeds 0..soak_seeds-1; returns {"scenarios", "soak"}."""
    import ray

    from rollspec.actors.loopback import set_loopback_environment

    set_loopback_environment()
    temp_dir = Path(f"/tmp/rs-chaos-ray-{os.getpid()}")  # short: Ray keeps unix sockets under it
    ray.init(num_cpus=8, include_dashboard=False, _temp_dir=str(temp_dir), log_to_driver=False)
    start = time.time()
    results: dict = {"scenarios": [], "soak": [], "load_start": list(os.getloadavg())}
    try:
        runner = ChaosRunner(workdir, steps=steps)
        for name in names:
            outcome = runner.run(SCENARIOS[name])
            print(outcome_line("scenario", outcome), flush=True)
            results["scenarios"].append(outcome.as_dict())
            _save(results, workdir)
        for seed in range(soak_seeds):
            outcome = runner.soak(seed)
            print(outcome_line("soak", outcome), flush=True)
            results["soak"].append(outcome.as_dict())
            _save(results, workdir)
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
    results["wall_s"] = time.time() - start
    results["load_end"] = list(os.getloadavg())  # 1/5/15-minute load: the machine is shared
    if report_path is not None:
        from rollspec.chaos.report import write_report

        write_report(results, report_path, command=command)
    return results


def _save(results: dict, workdir: Path) -> None:
    """Every outcome so far, so a suite stopped half way keeps what it measured."""
    (workdir / "results.json").write_text(json.dumps(results, indent=1))
