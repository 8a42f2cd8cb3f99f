"""Runs chaos scenarios and soak seeds on the tiny run and judges each with the invariant checker.

    runner = ChaosRunner(Path("/tmp/chaos"))            # needs a running Ray (ray.init) in this process
    result = runner.run(SCENARIOS["learner-kill"])     # {"passed", "problems", "items_lost", ...}

A run that a fault ends (a dead learner rank, a crashed or killed controller) is resumed from its
last checkpoint, as an operator or a job retry would; any other error fails the scenario.
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rollspec.actors.checkpoints import CheckpointStore
from rollspec.chaos.invariants import Expectations, check_run, weights_match
from rollspec.chaos.monkey import ChaosMonkey, FaultEvent
from rollspec.chaos.scenarios import Scenario
from rollspec.chaos.schedule import ENDS_RUN, Fault, draw
from rollspec.chaos.tiny import base_overrides, tiny_models
from rollspec.launch.config import load_config
from rollspec.launch.run_dir import LEDGER_FILE
from rollspec.launch.train import train

MAX_SEGMENTS = 4
DRIVER_TIMEOUT_S = 600.0


class ChaosSetupError(RuntimeError):
    """The scenario could not be staged (e.g. the driver finished before it could be killed)."""


@dataclasses.dataclass(slots=True)
class Outcome:
    """One disturbed run: its invariant report and the faults injected into it."""

    name: str
    passed: bool
    problems: list[str]
    items_lost: int
    segments: int
    errors: list[str]
    events: list[dict]
    message_faults: dict[str, int]
    drop_reasons: dict[str, int]
    max_step_gap_s: float
    wall_s: float
    weights_match: bool | None = None
    draft_version: int = 0
    """The last draft version the rollouts ran with (> 0: distilled drafts were published and applied)."""
    faults_skipped: int = 0
    """Scheduled actor faults not injected: the run's last step had completed before they were due."""
    actor_message_faults: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    """Faults the rollout, reward and draft-refresh actors injected on their own outbound messages, by
    actor, as their last status in the final run segment reports them (a lower bound: the counts of a
    killed actor's earlier life and of earlier segments are gone)."""

    @property
    def num_message_faults(self) -> int:
        return sum(v for k, v in self.message_faults.items() if k != "sent")

    def as_dict(self) -> dict[str, Any]:
        recover = [e["recover_s"] for e in self.events if e["recover_s"] is not None]
        return {**dataclasses.asdict(self), "actor_faults": len(self.events),
                "actor_faults_recovered": len(recover), "message_faults_injected": self.num_message_faults,
                "recover_s_max": max(recover, default=None)}


class ChaosRunner:
    """Scenario and soak runs under `workdir` (models, run directories, driver logs)."""

    def __init__(self, workdir: Path, *, steps: int = 4, progress_bound_s: float = 180.0):
        self.workdir = Path(workdir)
        self.steps = steps
        self.models = tiny_models(self.workdir / "models")
        self.runs = self.workdir / "runs"
        self._expect = dict(steps=steps, prompts_per_step=4, progress_bound_s=progress_bound_s)
        self._baselines: dict[tuple[str, ...], dict[str, float]] = {}

    # ------------------------------------------------------------------------------ entry points
    def run(self, scenario: Scenario) -> Outcome:
        """The scenario's disturbed run, judged; with its undisturbed baseline if it compares weights."""
        outcome = self._disturbed(scenario.name, [*scenario.setup, *scenario.faults], list(scenario.kills),
                                  kill_driver_after=scenario.kill_driver_after_checkpoint)
        if scenario.compare_weights and outcome.segments > 0:
            baseline = self.baseline(scenario.setup)
            outcome.weights_match = weights_match(self._final_fingerprint(scenario.name), baseline)
            if not outcome.weights_match:
                outcome.problems.append("final learner state differs from the undisturbed run's")
                outcome.passed = False
        return outcome

    def soak(self, seed: int) -> Outcome:
        """One soak seed: a random disturbance (schedule.draw) of the tiny run, judged."""
        drawn = draw(seed, steps=self.steps)
        return self._disturbed(f"soak-{seed}", list(drawn.overrides), list(drawn.faults))

    def baseline(self, setup: tuple[str, ...]) -> dict[str, float]:
        """Final learner fingerprint of the undisturbed run with `setup` (run once, then cached)."""
        if setup not in self._baselines:
            name = f"baseline-{len(self._baselines)}"
            outcome = self._disturbed(name, list(setup), [])
            if not outcome.passed:
                raise ChaosSetupError(f"the undisturbed run {name} ({setup}) fails its invariants: {outcome.problems}")
            self._baselines[setup] = self._final_fingerprint(name)
        return self._baselines[setup]

    # ------------------------------------------------------------------------------ one run
    def overrides(self, name: str, extra: list[str]) -> list[str]:
        return [*base_overrides(self.models, self.runs, steps=self.steps), f"run.name={name}",
                "run.overwrite=true", *extra]

    def _disturbed(self, name: str, extra: list[str], faults: list[Fault], *, kill_driver_after: int = 0) -> Outcome:
        start = time.time()
        overrides = self.overrides(name, extra)
        config = load_config(None, overrides)
        monkey = ChaosMonkey(faults)
        errors: list[str] = []
        resume, segments, summary = False, 0, None
        if kill_driver_after:
            monkey.events.append(self._kill_driver(name, overrides, kill_driver_after))
            resume = True
        while segments < MAX_SEGMENTS:
            segments += 1
            try:
                summary = train(config, resume=resume, progress=monkey.progress(self.steps), on_started=monkey.attach)
                break
            except Exception as exc:  # a fault that ends the run is expected; anything else fails the scenario
                errors.append(f"segment {segments}: {type(exc).__name__}: {str(exc)[:300]}")
                ended = sum(1 for e in monkey.events if e.kind in ENDS_RUN)
                if segments > ended:
                    break
                resume = True
            finally:
                monkey.detach()
        if summary is not None:
            monkey.finished(time.time())
        return self._judge(name, config, summary, monkey, segments, errors, time.time() - start)

    def _judge(self, name: str, config, summary, monkey: ChaosMonkey, segments: int, errors: list[str],
               wall_s: float) -> Outcome:
        expect = Expectations(max_staleness=config.algorithm.max_staleness, **self._expect)
        run_dir = self.runs / name
        if summary is None:
            return Outcome(name, False, [f"the run did not finish: {errors[-1] if errors else '?'}"],
                           0, segments, errors, [e.as_dict() for e in monkey.events], monkey.message_faults, {},
                           0.0, wall_s)
        ledger = json.loads((run_dir / LEDGER_FILE).read_text())
        metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
        report = check_run(ledger, metrics, summary["restores"], expect)
        problems = list(report.problems) + [f"ledger: {p}" for p in summary["ledger_problems"]]
        unrecovered = [e for e in monkey.events if e.recovered_at is None]
        problems += [f"no step completed after {e.kind} {e.target}" for e in unrecovered]
        return Outcome(name, not problems, problems, report.items_lost, segments, errors,
                       [e.as_dict() for e in monkey.events], monkey.message_faults, report.drop_reasons,
                       report.max_step_gap_s, wall_s, draft_version=summary.get("draft_version", 0),
                       faults_skipped=len(monkey.skipped), actor_message_faults=_actor_faults(summary))

    def _final_fingerprint(self, name: str) -> dict[str, float]:
        step, state = CheckpointStore(self.runs / name / "checkpoints").latest()
        if step != self.steps:
            raise ChaosSetupError(f"{name}: last checkpoint is step {step}, expected {self.steps}")
        return state["learner_fingerprint"]

    # ------------------------------------------------------------------------------ the driver as a process
    def _kill_driver(self, name: str, overrides: list[str], after_step: int) -> FaultEvent:
        """Run `rollspec train` as its own process (own local Ray), SIGKILL it once checkpoint
        `after_step` is complete, and make sure its process group is gone."""
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        temp_root = Path(f"/tmp/rs-chaos-{os.getpid()}")  # short: Ray keeps unix sockets under it
        command = [sys.executable, "-m", "rollspec.launch.cli", "train", *overrides, f"ray.temp_root={temp_root}"]
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.workdir / f"{name}-driver.log", "w") as log:
            driver = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        store = CheckpointStore(self.runs / name / "checkpoints")
        deadline = time.time() + DRIVER_TIMEOUT_S
        try:
            while max(store.complete_steps(), default=0) < after_step:
                if driver.poll() is not None or time.time() > deadline:
                    raise ChaosSetupError(f"{name}: the driver ended (code {driver.returncode}) or timed out before "
                                          f"checkpoint {after_step}; see {self.workdir / f'{name}-driver.log'}")
                time.sleep(0.1)
            at = time.time()
            driver.send_signal(signal.SIGKILL)
            driver.wait()
        finally:
            _end_process_group(driver)
        return FaultEvent("kill_driver", "controller", after_step, at)


def _actor_faults(summary: dict) -> dict[str, dict[str, int]]:
    statuses = [*(summary.get("rollouts") or []), *(summary.get("rewards") or []), summary.get("refresh")]
    return {s.get("name", "draft-refresh"): dict(s.get("faults", {})) for s in statuses if isinstance(s, dict)}


def _end_process_group(driver: subprocess.Popen, grace_s: float = 30.0) -> None:
    """The killed driver's own Ray processes (its session, started by us) follow it down through Ray's
    reaper; whatever is left after `grace_s` is killed by process group."""
    if driver.poll() is None:
        driver.kill()
        driver.wait()
    deadline = time.time() + grace_s
    while time.time() < deadline:
        try:
            os.killpg(driver.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    try:
        os.killpg(driver.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
