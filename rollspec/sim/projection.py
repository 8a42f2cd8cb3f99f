"""Run a scenario: synchronous steps, the staleness sweep and the frontier, for plain / fixed-k / adaptive speculation."""

from dataclasses import dataclass
from typing import Any

import numpy as np

from rollspec.sim.frontier import Frontier, speculation_frontier
from rollspec.sim.pipeline import PipelineResult, simulate_pipeline
from rollspec.sim.rollout import simulate_drain
from rollspec.sim.scenario import Scenario
from rollspec.sim.speculation import Speculation
from rollspec.sim.training import SyncResult, simulate_sync

FRONTIER_BATCH_SIZES = np.unique(np.round(np.geomspace(1, 1024, 41)).astype(np.int64))
FRONTIER_POINTS = 41
SHORT_RESPONSE_TOKENS = 1024  # responses of a short-answer workload, for the second frontier


@dataclass(frozen=True, slots=True)
class Projection:
    """A scenario's simulated step times. Speedups compare with synchronous plain decoding on the same scenario."""

    scenario: Scenario
    sync: dict[Speculation, SyncResult]
    sweep: dict[Speculation, dict[int, PipelineResult]]
    frontier: Frontier  # at the scenario's typical context
    short_frontier: Frontier  # at prompt + SHORT_RESPONSE_TOKENS: short answers, where large batches are compute-bound
    drain_trace: list[tuple[float, int, int]]  # (seconds, B, k) of one adaptive synchronous rollout

    def rollout_speedup(self, mode: Speculation) -> float:
        """Synchronous rollout (batch drain) time of plain decoding over that of `mode`."""
        return float(self.sync[Speculation.PLAIN].rollout_s.mean() / self.sync[mode].rollout_s.mean())

    def sync_speedup(self, mode: Speculation) -> float:
        return self.sync[Speculation.PLAIN].mean_step_s / self.sync[mode].mean_step_s

    def e2e_speedup(self, mode: Speculation, max_staleness: int) -> float:
        """Steady-state step time of sync plain (the pipeline at staleness 0) over `mode` at `max_staleness`."""
        return self.sweep[Speculation.PLAIN][0].mean_step_s / self.sweep[mode][max_staleness].mean_step_s

    def best_e2e(self, mode: Speculation) -> tuple[float, int]:
        """The highest end-to-end speedup over the staleness sweep, and the bound it needs."""
        return max((self.e2e_speedup(mode, s), s) for s in self.sweep[mode])

    def summary(self) -> dict[str, Any]:
        s = self.scenario.training.max_staleness
        out: dict[str, Any] = {
            "rollout_fraction_sync_plain": self.sync[Speculation.PLAIN].rollout_fraction,
            "max_staleness": s,
            "break_even_batch_at_paper_acceptance": self.frontier.break_even_batch(
                self.scenario.speculation.acceptance_length),
            "break_even_batch_at_paper_acceptance_short_responses": self.short_frontier.break_even_batch(
                self.scenario.speculation.acceptance_length),
            "kv_feasible_batch_at_typical_context": self.frontier.max_batch_size,
        }
        for mode in Speculation:
            best, best_s = self.best_e2e(mode)
            out[mode.value] = {
                "rollout_speedup": self.rollout_speedup(mode),
                "sync_step_speedup": self.sync_speedup(mode),
                "sync_step_s": self.sync[mode].mean_step_s,
                "sync_rollout_s": float(self.sync[mode].rollout_s.mean()),
                "mean_k_sync": self.sync[mode].stats.mean_k,
                "e2e_speedup_at_max_staleness": self.e2e_speedup(mode, s),
                "best_e2e_speedup": best,
                "best_e2e_staleness": best_s,
                "step_s_by_staleness": {str(k): r.mean_step_s for k, r in self.sweep[mode].items()},
                "generator_utilization_by_staleness": {str(k): r.generator_utilization
                                                       for k, r in self.sweep[mode].items()},
                "dropped_stale_by_staleness": {str(k): r.num_dropped_stale for k, r in self.sweep[mode].items()},
            }
        return out


def project(scenario: Scenario, *, modes: tuple[Speculation, ...] = tuple(Speculation)) -> Projection:
    """Simulate every configuration of `scenario` with the same seed (same lengths, same acceptance draws)."""
    sim = scenario.simulation
    sync = {mode: simulate_sync(replica=scenario.replica(mode, sim.seed), lengths=scenario.lengths(),
                                training=scenario.training_config(0), prompt_tokens=scenario.workload.prompt_tokens,
                                num_steps=sim.num_steps, rng=np.random.default_rng(sim.seed))
            for mode in modes}
    sweep = {mode: {s: simulate_pipeline(replica=scenario.replica(mode, sim.seed), lengths=scenario.lengths(),
                                         training=scenario.training_config(s),
                                         prompt_tokens=scenario.workload.prompt_tokens,
                                         num_steps=sim.num_steps + s + 1, rng=np.random.default_rng(sim.seed))
                     for s in scenario.training.staleness_sweep}
             for mode in modes}
    tracer = scenario.replica(Speculation.ADAPTIVE, sim.seed)
    tracer.trace = []
    batch_size = scenario.training_config(0).trajectories_per_step
    simulate_drain(tracer, scenario.lengths().sample(np.random.default_rng(sim.seed), batch_size))
    w = scenario.workload
    short = w.prompt_tokens + min(SHORT_RESPONSE_TOKENS, w.response_max_tokens) / 2
    return Projection(scenario, sync, sweep, scenario_frontier(scenario), scenario_frontier(scenario, short),
                      tracer.trace)


def scenario_frontier(scenario: Scenario, context_tokens: float | None = None) -> Frontier:
    """The frontier at `context_tokens`, by default the scenario's token-weighted mean context (a typical step's)."""
    spec = scenario.speculation
    if context_tokens is None:
        context_tokens = scenario.lengths().token_weighted_context(np.random.default_rng(scenario.simulation.seed),
                                                                   scenario.workload.prompt_tokens)
    return speculation_frontier(scenario.cost(), k=spec.fixed_k, k_max=spec.k_max, context_tokens=context_tokens,
                                batch_sizes=FRONTIER_BATCH_SIZES,
                                acceptance_lengths=np.linspace(1.0, spec.fixed_k + 1.0, FRONTIER_POINTS),
                                max_batch_size=scenario.max_batch_size(context_tokens))
