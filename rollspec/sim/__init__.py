"""Performance simulator: measured or analytic step costs projected to GRPO step time at cluster scale.

Shares the scheduler's throughput formulas, cost model, depth policy and admission control
(it imports them; nothing is copied). Entry points:

- `load_scenario(name)` + `project(scenario)`: sync and bounded-staleness async steps for plain,
  fixed-k and adaptive speculation, plus the frontier where speculation stops paying;
  `run_scenario(name, out_dir)` also prints tables and writes plots (`rollspec sim NAME`).
- `calibrate(measured)`: predicts measured drains and step times from measured cost tables
  (schema in `rollspec.sim.measured`) and reports the error.
- `calibrate_actor_runs(doc)`: the same against real `rollspec train` runs (Ray actors, ZeroMQ,
  DeepSpeed learner): engine scale and per-step overhead fitted on the sync runs, async held out.
- Building blocks: `RooflineCost` / `TableCost` (step costs), `ReplicaSim` / `simulate_drain`
  (one replica, decode step by decode step), `simulate_sync`, `simulate_pipeline`.
"""

from rollspec.sim.actor_calibration import ActorCalibration, calibrate_actor_runs, load_actor_runs
from rollspec.sim.calibration import CalibrationReport, calibrate
from rollspec.sim.frontier import Frontier, speculation_frontier
from rollspec.sim.hardware import GpuSpec, ModelSpec
from rollspec.sim.lengths import LengthDistribution
from rollspec.sim.measured import Measured, MeasurementError, load_measured
from rollspec.sim.pipeline import PipelineResult, simulate_pipeline
from rollspec.sim.projection import Projection, project
from rollspec.sim.rollout import ReplicaConfig, ReplicaSim, simulate_drain
from rollspec.sim.roofline import RooflineCost
from rollspec.sim.scenario import Scenario, ScenarioError
from rollspec.sim.scenario_file import load_scenario, scenario_names
from rollspec.sim.speculation import Speculation, depth_policy, startup_cost_model
from rollspec.sim.table_cost import CostLevel, TableCost
from rollspec.sim.training import TrainingConfig, simulate_sync

__all__ = [
    "ActorCalibration", "CalibrationReport", "CostLevel", "Frontier", "GpuSpec", "LengthDistribution", "Measured",
    "MeasurementError", "ModelSpec", "PipelineResult", "Projection", "ReplicaConfig", "ReplicaSim", "RooflineCost",
    "Scenario", "ScenarioError", "Speculation", "TableCost", "TrainingConfig", "calibrate", "calibrate_actor_runs",
    "depth_policy", "load_actor_runs", "load_measured", "load_scenario", "project", "scenario_names",
    "simulate_drain", "simulate_pipeline", "simulate_sync", "speculation_frontier", "startup_cost_model",
]
