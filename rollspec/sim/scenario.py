"""A projection scenario: every assumption the simulator runs on, and the simulator pieces built from them."""

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from rollspec.sim.acceptance_profile import constant_alphas
from rollspec.sim.hardware import GpuSpec, ModelSpec
from rollspec.sim.lengths import LengthDistribution
from rollspec.sim.measured import Measured, load_measured
from rollspec.sim.rollout import ReplicaConfig, ReplicaSim
from rollspec.sim.roofline import RooflineCost
from rollspec.sim.speculation import Speculation, depth_policy, startup_cost_model
from rollspec.sim.step_cost import StepCost
from rollspec.sim.training import TrainingConfig


class ScenarioError(ValueError):
    """A scenario file that is missing an assumption, has an unknown one, or does not add up."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HardwareSection:
    """Rollout and learner GPUs (roofline scenarios). Replicas = rollout_gpus / gpus_per_replica."""

    gpu_name: str
    hbm_bytes_per_s: float
    flops_per_s: float
    hbm_capacity_bytes: float
    kv_memory_fraction: float
    bandwidth_efficiency: float
    flops_efficiency: float
    rollout_gpus: int
    gpus_per_replica: int
    learner_gpus: int
    target_overhead_s: float
    draft_overhead_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadSection:
    """The GRPO batch and its response lengths (lognormal, capped at the generation budget)."""

    prompts_per_step: int
    group_size: int
    prompt_tokens: int
    response_mean_tokens: float
    response_sigma: float
    response_max_tokens: int
    max_num_seqs: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeculationSection:
    """The drafter and its acceptance: mean tokens per verify step at depth fixed_k (what papers report)."""

    drafter: str
    acceptance_length: float
    fixed_k: int
    k_max: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingSection:
    """Learner throughput over the whole batch, reward and weight-sync latency, and the staleness bounds studied."""

    learner_tokens_per_s: float
    learner_fixed_s: float
    reward_s: float
    weight_sync_s: float
    colocated: bool
    max_staleness: int
    staleness_sweep: list[int]


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulationSection:
    """How much to simulate: learner steps measured after warm-up, seed, fluid chunk length."""

    num_steps: int
    seed: int
    max_chunk_steps: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MeasuredSection:
    """Where a measured scenario's cost tables come from (path relative to the YAML), and the replica they describe.

    CPU tables describe the one engine that was measured; GPU tables from a GPU run describe
    one replica, of which the cluster runs `num_replicas`, each holding `kv_capacity_tokens`.
    """

    file: str
    num_replicas: int
    kv_capacity_tokens: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """Everything one projection assumes. `why[path]` says where each value comes from.

    cost_kind "roofline" prices steps from `hardware`, `target` and `draft`; "measured"
    from the cost tables of `measured_file` (schema rollspec.sim.measured/v1), as described by `measured`.
    """

    name: str
    description: str
    cost_kind: str
    workload: WorkloadSection
    speculation: SpeculationSection
    training: TrainingSection
    simulation: SimulationSection
    hardware: HardwareSection | None = None
    target: ModelSpec | None = None
    draft: ModelSpec | None = None
    measured: MeasuredSection | None = None
    measured_file: Path | None = None
    why: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        w, s = self.workload, self.speculation
        if w.prompts_per_step % self.num_replicas:
            raise ScenarioError(f"{self.name}: prompts_per_step {w.prompts_per_step} must split evenly over "
                                f"{self.num_replicas} replicas (replicas are simulated as symmetric)")
        if not 1 <= s.fixed_k <= s.k_max:
            raise ScenarioError(f"{self.name}: need 1 <= fixed_k <= k_max, got {s.fixed_k}, {s.k_max}")
        if self.training.max_staleness not in self.training.staleness_sweep:
            raise ScenarioError(f"{self.name}: max_staleness {self.training.max_staleness} must be in "
                                f"staleness_sweep {self.training.staleness_sweep}")

    @property
    def num_replicas(self) -> int:
        if self.measured is not None:
            return self.measured.num_replicas
        assert self.hardware is not None, self.name
        return self.hardware.rollout_gpus // self.hardware.gpus_per_replica

    def measured_costs(self) -> Measured:
        assert self.measured_file is not None, self.name
        return load_measured(self.measured_file)

    def cost(self) -> StepCost:
        """A fresh cost model of one replica (roofline costs carry the current context, so never share one)."""
        if self.cost_kind == "measured":
            return self.measured_costs().cost()
        hw = self.hardware
        assert hw is not None and self.target is not None, self.name
        gpu = GpuSpec(name=hw.gpu_name, hbm_bytes_per_s=hw.hbm_bytes_per_s, flops_per_s=hw.flops_per_s,
                      bandwidth_efficiency=hw.bandwidth_efficiency, flops_efficiency=hw.flops_efficiency)
        return RooflineCost(target=self.target, draft=self.draft, gpu=gpu, num_gpus=hw.gpus_per_replica,
                            target_overhead_s=hw.target_overhead_s, draft_overhead_s=hw.draft_overhead_s)

    def lengths(self) -> LengthDistribution:
        w = self.workload
        return LengthDistribution.lognormal(w.response_mean_tokens, w.response_sigma, w.response_max_tokens)

    def alphas(self) -> NDArray[np.float64]:
        s = self.speculation
        return constant_alphas(s.acceptance_length, s.fixed_k, s.k_max)

    def replica(self, speculation: Speculation, seed: int) -> ReplicaSim:
        """One replica; its depth policy starts from a profile at short context and corrects online."""
        s, w = self.speculation, self.workload
        # A start-up profile sees prompt-length contexts (a measured one, its shortest level).
        start = self.measured_costs().levels[0].context_tokens if self.measured else w.prompt_tokens + 1
        belief = startup_cost_model(self.cost(), max_batch_size=w.max_num_seqs, k_max=max(s.k_max, s.fixed_k),
                                    context_tokens=start)
        config = ReplicaConfig(max_num_seqs=w.max_num_seqs, prompt_tokens=w.prompt_tokens,
                               kv_capacity_tokens=self.kv_capacity_tokens(),
                               max_chunk_steps=self.simulation.max_chunk_steps)
        depth = depth_policy(speculation, fixed_k=s.fixed_k, k_max=s.k_max, belief=belief)
        return ReplicaSim(cost=self.cost(), depth=depth, alphas=self.alphas(), config=config,
                          rng=np.random.default_rng(seed))

    def training_config(self, max_staleness: int) -> TrainingConfig:
        """One replica's share of the step; the learner trains every replica's share, so per-token time scales."""
        t, w = self.training, self.workload
        return TrainingConfig(prompts_per_step=w.prompts_per_step // self.num_replicas, group_size=w.group_size,
                              reward_s=t.reward_s, learner_fixed_s=t.learner_fixed_s,
                              learner_s_per_token=self.num_replicas / t.learner_tokens_per_s,
                              weight_sync_s=t.weight_sync_s, max_staleness=max_staleness, colocated=t.colocated)

    def max_batch_size(self, context_tokens: float) -> float:
        """Most rows one replica can run at this context: KV capacity, and for measured tables the profiled range."""
        rows = self.kv_capacity_tokens() / context_tokens
        if self.measured is not None:
            rows = min(rows, max(b for level in self.measured_costs().levels for b, _ in level.target_s))
        return rows

    def kv_capacity_tokens(self) -> float:
        """Tokens one replica's KV cache holds: the engine's share of HBM minus all weights, or as measured."""
        if self.measured is not None:
            return self.measured.kv_capacity_tokens
        if self.hardware is None or self.target is None:
            return math.inf
        hw = self.hardware
        weights = self.target.num_params * self.target.bytes_per_param
        if self.draft is not None:
            weights += self.draft.num_params * self.draft.bytes_per_param
        free = hw.gpus_per_replica * hw.hbm_capacity_bytes * hw.kv_memory_fraction - weights
        if free <= 0:
            raise ScenarioError(f"{self.name}: weights ({weights:.3g} B) leave no KV memory on "
                                f"{hw.gpus_per_replica} x {hw.hbm_capacity_bytes:.3g} B")
        return free / self.target.kv_bytes_per_token
