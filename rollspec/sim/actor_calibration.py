"""Calibration against the real actor pipeline: predict `rollspec train` step times (Ray actors over ZeroMQ,
DeepSpeed learner) from the rollout actor's own start-up cost profile, with a held-out split.

Input: a document of schema `rollspec.sim.actor-runs/v1` (built by bench/sim_pipeline.py from
bench/pipeline.py's runs, see `load_actor_runs`). What each prediction uses:

- measured inputs, timers of the parts the simulator does not model (each run's own means): the
  learner's optimizer step (train_s) and gather + publish (publish_s), the reward tail
  (reward_s), and the rollout actor's weight swap (swap_s per policy swap);
- the rollout side, simulated decode step by decode step: the rollout actor's start-up profile
  c_target(B, q) and c_draft(B), acceptance per draft position as the run's verify steps counted
  it, response lengths of the policy on the run's task, the scheduler's depth policy;
- two fitted numbers, fitted on the synchronous runs only: `engine_scale` (measured engine seconds
  over the profile's prediction: the profile is taken once at start-up, while the run's engine
  shares the cores with the learner and the draft-refresh actor, and its drafter catches up on
  every new batch's prompts, which the profile does not time) and `overhead_s` (per step:
  dispatch, polling and ZeroMQ latency around the timed phases).

So the synchronous rows are fits (their error shows how well two numbers explain two runs); the
asynchronous rows are held out: predicted from the sync fit, the profile and the async runs' own
timers, with rollout, reward and learner overlapped by the simulator's event loop.
"""

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rollspec.scheduler import CostModel
from rollspec.sim.calibration import CalibrationRow
from rollspec.sim.lengths import LengthDistribution
from rollspec.sim.measured import MeasurementError
from rollspec.sim.pipeline import simulate_pipeline
from rollspec.sim.rollout import ReplicaConfig, ReplicaSim
from rollspec.sim.speculation import Speculation, depth_policy
from rollspec.sim.table_cost import TableCost
from rollspec.sim.training import TrainingConfig

SCHEMA = "rollspec.sim.actor-runs/v1"
TIMERS = ("step_s", "generate_s", "reward_s", "learner_wait_s", "train_s", "publish_s", "weight_sync_s", "engine_s")


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorRun:
    """One `rollspec train` run: its mode and the means of its measured steps (after warm-up)."""

    name: str
    speculation: Speculation
    max_staleness: int
    acceptance: tuple[float, ...]
    swap_s: float
    means: dict[str, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorRuns:
    """A parsed `rollspec.sim.actor-runs/v1` document."""

    machine: str
    model: str
    prompt_tokens: int
    max_num_seqs: int
    k_max: int
    prompts_per_step: int
    group_size: int
    target_s: dict[tuple[int, int], float]
    draft_s: dict[int, float]
    response_lengths: tuple[int, ...]
    runs: tuple[ActorRun, ...]


@dataclass(frozen=True, slots=True)
class ActorCalibration:
    """Predicted vs measured step time per run; `fit` rows were fitted, `heldout` rows predicted."""

    fit: tuple[CalibrationRow, ...]
    heldout: tuple[CalibrationRow, ...]
    engine: tuple[CalibrationRow, ...]  # engine seconds per step (sync runs), before engine_scale
    engine_scale: float
    overhead_s: float

    @property
    def max_error(self) -> float:
        """Worst relative error over every step-time row, fitted and held out."""
        return max((row.error for row in (*self.fit, *self.heldout)), default=math.nan)

    @property
    def heldout_max_error(self) -> float:
        return max((row.error for row in self.heldout), default=math.nan)

    def as_dict(self) -> dict[str, Any]:
        def rows(items):
            return [{"name": r.name, "measured_s": r.measured_s, "predicted_s": r.predicted_s, "error": r.error}
                    for r in items]
        return {"max_error": self.max_error, "heldout_max_error": self.heldout_max_error,
                "fitted": {"engine_scale": self.engine_scale, "overhead_s": self.overhead_s},
                "fit_rows": rows(self.fit), "heldout_rows": rows(self.heldout),
                "engine_rows_unscaled": rows(self.engine)}


def load_actor_runs(source: str | Path | dict[str, Any]) -> ActorRuns:
    """Parse the document (a JSON path or a loaded dict). Schema:

    {"schema": "rollspec.sim.actor-runs/v1", "machine": str, "model": str,
     "prompt_tokens": int, "max_num_seqs": int, "k_max": int, "prompts_per_step": int, "group_size": int,
     "cost": {"target_s": [[B, q, s], ...], "draft_s": [[B, s], ...]},   # the rollout actor's start-up profile
     "response_lengths": [n, ...],                                         # the policy's, on the run's task
     "runs": [{"name": "sync_plain", "speculation": "plain" | "fixed" | "adaptive", "max_staleness": 0,
               "acceptance": [a_1, ...],   # conditional per position, >= k_max values for speculative runs
               "swap_s": s,                # rollout actor seconds per policy weight swap
               "means": {step_s, generate_s, reward_s, learner_wait_s, train_s, publish_s, weight_sync_s,
                         engine_s}}]}      # seconds per measured step
    """
    doc = json.loads(Path(source).read_text()) if isinstance(source, (str, Path)) else source
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise MeasurementError(f"expected a document with schema {SCHEMA!r}, got "
                               f"{doc.get('schema') if isinstance(doc, dict) else type(doc).__name__!r}")
    try:
        runs = tuple(ActorRun(name=str(r["name"]), speculation=Speculation(r["speculation"]),
                              max_staleness=int(r["max_staleness"]), acceptance=tuple(float(a) for a in r["acceptance"]),
                              swap_s=float(r["swap_s"]), means={key: float(r["means"][key]) for key in TIMERS})
                     for r in doc["runs"])
        out = ActorRuns(machine=str(doc["machine"]), model=str(doc["model"]), prompt_tokens=int(doc["prompt_tokens"]),
                        max_num_seqs=int(doc["max_num_seqs"]), k_max=int(doc["k_max"]),
                        prompts_per_step=int(doc["prompts_per_step"]), group_size=int(doc["group_size"]),
                        target_s={(int(b), int(q)): float(s) for b, q, s in doc["cost"]["target_s"]},
                        draft_s={int(b): float(s) for b, s in doc["cost"]["draft_s"]},
                        response_lengths=tuple(int(n) for n in doc["response_lengths"]), runs=runs)
    except (KeyError, TypeError, ValueError) as exc:
        raise MeasurementError(f"actor-runs document does not follow {SCHEMA}: {exc!r}") from exc
    for run in runs:
        if run.speculation is not Speculation.PLAIN and len(run.acceptance) < out.k_max:
            raise MeasurementError(f"run {run.name}: speculative runs need {out.k_max} acceptance values, "
                                   f"got {list(run.acceptance)!r}")
    return out


def calibrate_actor_runs(source: ActorRuns | str | Path | dict[str, Any], *, num_seeds: int = 3,
                         num_steps: int = 8, timers_from_sync: bool = False,
                         fitted: tuple[float, float] | None = None) -> ActorCalibration:
    """Fit engine_scale and overhead_s on the synchronous runs, then predict every run (see the module docstring).

    `timers_from_sync`: the async runs use the learner and reward timers of the sync run with the
    same drafter instead of their own, so nothing measured in an async run enters its prediction.
    `fitted`: (engine_scale, overhead_s) fitted elsewhere (another set of runs); every run is then held out.
    """
    m = source if isinstance(source, ActorRuns) else load_actor_runs(source)
    sync = [run for run in m.runs if run.max_staleness == 0]
    if not sync:
        raise MeasurementError("the calibration fits on synchronous runs (max_staleness 0); the document has none")
    # engine seconds per step the profile predicts, scale 1 and no overhead
    engine = {run.name: _simulate(m, run, run, 1.0, 0.0, num_seeds, num_steps)[1] for run in sync}
    if fitted is None:
        scale = sum(run.means["engine_s"] for run in sync) / sum(engine.values())
        overhead = statistics.fmean(_unexplained(run) for run in sync)
    else:
        scale, overhead = fitted
    by_drafter = {run.speculation: run for run in sync}

    def row(run: ActorRun) -> CalibrationRow:
        timers = by_drafter.get(run.speculation, run) if timers_from_sync else run
        predicted = _simulate(m, run, timers, scale, overhead, num_seeds, num_steps)[0]
        return CalibrationRow(run.name, "actor_step", run.means["step_s"], predicted)

    fit = tuple(row(run) for run in m.runs if run.max_staleness == 0 and fitted is None)
    heldout = tuple(row(run) for run in m.runs if run.max_staleness > 0 or fitted is not None)
    engine_rows = tuple(CalibrationRow(run.name, "engine", run.means["engine_s"], engine[run.name]) for run in sync)
    return ActorCalibration(fit, heldout, engine_rows, scale, overhead)


def _unexplained(run: ActorRun) -> float:
    """Seconds of a synchronous step outside the engine and the timed non-rollout parts."""
    t = run.means
    return t["step_s"] - t["engine_s"] - t["reward_s"] - t["train_s"] - t["publish_s"] - run.swap_s


def _simulate(m: ActorRuns, run: ActorRun, timers: ActorRun, engine_scale: float, overhead_s: float,
              num_seeds: int, num_steps: int) -> tuple[float, float]:
    """(mean step seconds, mean engine busy seconds per step) of `run` with the non-rollout timers of `timers`."""
    t = timers.means
    # The overhead is latency between phases, not work on either resource: charged like the reward tail.
    training = TrainingConfig(prompts_per_step=m.prompts_per_step, group_size=m.group_size,
                              reward_s=t["reward_s"] + overhead_s, learner_fixed_s=t["train_s"] + t["publish_s"],
                              learner_s_per_token=0.0, weight_sync_s=timers.swap_s, max_staleness=run.max_staleness,
                              drain_to_swap=True)
    steps, busy = [], []
    for seed in range(num_seeds):
        replica = _replica(m, run, engine_scale, seed)
        result = simulate_pipeline(replica=replica, lengths=LengthDistribution.empirical(m.response_lengths),
                                   training=training, prompt_tokens=m.prompt_tokens,
                                   num_steps=num_steps + run.max_staleness + 1, rng=np.random.default_rng(100 + seed))
        steps.append(result.mean_step_s)
        busy.append(result.generator_busy_s / len(result.step_end_s))
    return float(np.mean(steps)), float(np.mean(busy))


def _replica(m: ActorRuns, run: ActorRun, engine_scale: float, seed: int) -> ReplicaSim:
    target = {key: engine_scale * s for key, s in m.target_s.items()}
    draft = {b: engine_scale * s for b, s in m.draft_s.items()}
    belief = CostModel.from_profile(m.target_s, m.draft_s)  # the live scheduler plans on the unscaled profile
    # Prefill is not in the profile: priced as the widest profiled verify, per token, times the prompt.
    q_top = max(q for _, q in target)
    prefill = {b: s * m.prompt_tokens / q_top for (b, q), s in target.items() if q == q_top}
    cost = TableCost.single(target, draft, prefill)
    depth = depth_policy(run.speculation, fixed_k=m.k_max, k_max=m.k_max, belief=belief)
    alphas = np.array(run.acceptance[:m.k_max] if run.acceptance else [0.0] * m.k_max)
    config = ReplicaConfig(max_num_seqs=m.max_num_seqs, prompt_tokens=m.prompt_tokens, sampled_acceptance=True)
    return ReplicaSim(cost=cost, depth=depth, alphas=alphas, config=config, rng=np.random.default_rng(seed))
