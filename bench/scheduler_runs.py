"""Timed rollouts at a fixed depth, plainly with the drafter attached, or with the adaptive DepthScheduler."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

from bench.engine_runs import Workload
from rollspec import scheduler as this_tree
from rollspec.engine.drafters.build import build_drafter
from rollspec.engine.engine import Engine
from rollspec.engine.profiling import StepTimeRecorder, profile_step_costs
from rollspec.engine.sequence import Request
from rollspec.scheduler import (
    CatchUpCost,
    CostModel,
    DepthScheduler,
    profile_points,
    profiled_costs,
)
from rollspec.scheduler.standing import PlainLease


def _drafter(workload: Workload, kind: str, config):
    path = {"draft_model": workload.zoo.draft, "eagle": workload.zoo.eagle}.get(kind)
    return build_drafter(kind, policy=workload.policy, config=config, draft_path=path)


def step_profile(workload: Workload, kind: str):
    """What a rollout actor does at start-up: measure c_target(B, q), c_draft(B) and c_catch(B) on this device (the
    raw profile: `profiled_costs` of any scheduler revision turns it into its cost models)."""
    config = workload.engine_config()
    batch_sizes, qs = profile_points(config.max_batch_size, config.k_max)
    return profile_step_costs(workload.policy.model, config, batch_sizes=batch_sizes, qs=qs,
                              drafter_factory=lambda cfg: _drafter(workload, kind, cfg))


def profile_cost_model(workload: Workload, kind: str) -> tuple[CostModel, CatchUpCost]:
    """step_profile as this tree's cost models."""
    return profiled_costs(step_profile(workload, kind))


def adaptive_scheduler(workload: Workload, costs: tuple, package=None) -> DepthScheduler:
    """The rollout actor's depth policy, planning with (and refining) the given profiled costs; from `package`, the
    rollspec.scheduler package of another revision (bench/scheduler_versions.load_scheduler), if given."""
    scheduler = package or this_tree
    config = scheduler.DepthConfig(k_max=workload.engine_config().k_max, mode=scheduler.DepthMode.ADAPTIVE)
    return scheduler.DepthScheduler(config, *costs)


class StandingPlain:
    """A depth policy that always decodes plainly and leases it for good: with a drafter attached the engine keeps
    the drafter's state as it does under the adaptive scheduler's plain lease and asks it (and this) nothing."""

    def __init__(self) -> None:
        self.num_steps = 0
        self._lease = PlainLease(steps=1 << 40, min_batch_size=0)

    def choose_depth(self, batch_size: int, catch_up_tokens: int = 0) -> int:
        return 0

    def plain_lease(self) -> PlainLease:
        return self._lease

    def observe(self, batch_size, k, num_accepted, draft_time_s, target_time_s) -> None:
        self.num_steps += 1


def build_engine(workload: Workload, kind: str, *, fixed_k: int | None = None, scheduler: DepthScheduler | None = None,
                 drafter_at_plain: bool = False) -> Engine:
    """An engine on the workload's policy at a fixed depth, or with `scheduler`. Fixed k = 0 runs without a drafter
    (plain decoding); with `drafter_at_plain` instead with the drafter attached under a standing plain lease
    (StandingPlain): what being ready to speculate costs where nothing is drafted. Its depth policy is
    `engine.depth` (depth_counters)."""
    if (fixed_k is None) == (scheduler is None) or (drafter_at_plain and fixed_k != 0):
        raise ValueError(f"build_engine takes fixed_k or scheduler (drafter_at_plain: fixed_k = 0), got {fixed_k}, "
                         f"{scheduler}, {drafter_at_plain}")
    config = workload.engine_config()
    # The engine is handed the scheduler itself, not a wrapper: a wrapper would hide its plain lease (the engine
    # then asks for k every step) and add a call a step. Depths run are counted from its stats / the recorder.
    depth = scheduler or (StandingPlain() if drafter_at_plain else StepTimeRecorder([fixed_k]))
    drafter = _drafter(workload, kind, config) if fixed_k != 0 or drafter_at_plain else None
    return Engine(workload.policy.model, config, drafter=drafter, depth=depth)


def depth_counters(depth) -> dict[str, float]:
    """Running totals of a depth policy built by build_engine: steps, steps weighted by their k (`k_steps`: mean k
    is their ratio) and, for the DepthScheduler, its checks, vetoes, measured starts, probes and plain steps."""
    if isinstance(depth, DepthScheduler) or hasattr(depth, "stats"):  # also another revision's (scheduler_versions)
        stats = depth.stats
        return {"steps": sum(stats.num_steps_by_k), "k_steps": sum(k * n for k, n in enumerate(stats.num_steps_by_k)),
                "num_checks": stats.num_checks, "num_vetoes": stats.num_vetoes,
                "num_measured_starts": stats.num_measured_starts, "num_probes": stats.num_probes,
                "num_plain": stats.num_steps_by_k[0]}
    if isinstance(depth, StandingPlain):
        return {"steps": depth.num_steps, "k_steps": 0}
    return {"steps": len(depth.steps), "k_steps": sum(k for _, k, _, _ in depth.steps)}


def run_depth(workload: Workload, kind: str, *, fixed_k: int | None = None, scheduler: DepthScheduler | None = None,
              round_size: int | None = None, drafter_at_plain: bool = False) -> dict:
    """One timed rollout of the workload through a new engine (build_engine: at a fixed depth, or with `scheduler`,
    which is kept: it learns across runs). With `round_size`, the prompts go in consecutive rounds of that many,
    each run to completion before the next (a batch draining round after round, as a rollout actor's does)."""
    engine = build_engine(workload, kind, fixed_k=fixed_k, scheduler=scheduler, drafter_at_plain=drafter_at_plain)
    before = depth_counters(engine.depth)
    first_step = scheduler.stats.num_steps if scheduler is not None else 0
    start, start_cpu, start_thread = time.perf_counter(), time.process_time(), time.thread_time()
    completions = [c for rnd in rounds(workload, round_size) for c in engine.generate(rnd)]
    elapsed_thread = time.thread_time() - start_thread
    elapsed, elapsed_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    tokens = sum(len(c.token_ids) for c in completions)
    counts = {key: value - before[key] for key, value in depth_counters(engine.depth).items()}
    # CPU seconds beside wall seconds: with one torch thread they are the work done, which a co-tenant on the
    # shared cores does not inflate the way it inflates wall time. Thread CPU is this thread's alone (the
    # engine's: torch runs its one intra-op thread here), without other threads of the process.
    out = {"tokens_per_s": tokens / elapsed, "tokens_per_cpu_s": tokens / elapsed_cpu,
           "tokens_per_tcpu_s": tokens / elapsed_thread,
           "mean_k": counts["k_steps"] / max(1, counts["steps"]), "num_steps": counts["steps"], "tokens": tokens}
    if scheduler is not None:
        out |= {key: counts[key] for key in ("num_checks", "num_vetoes", "num_measured_starts", "num_probes")}
        out["probe_extra_frac"] = _probe_extra_s(scheduler, first_step) / elapsed_thread
    return out


def rounds(workload: Workload, round_size: int | None, seed_offset: int = 0) -> list[list[Request]]:
    """The workload's requests in consecutive rounds of `round_size` (all in one round without it)."""
    requests = workload.requests(seed_offset)
    size = round_size or len(requests)
    return [requests[i: i + size] for i in range(0, len(requests), size)]


def endless_rounds(workload: Workload, round_size: int | None) -> Iterator[list[Request]]:
    """`rounds`, pass after pass over the prompts, each pass with other sampling seeds: at temperature 1 a fixed k
    replayed one sample path per prompt, and a settled adaptive another (one replayed fixed-5's 2,194 tokens in 480
    steps run after run at B = 1), so a contender's rate carried its paths' luck. Every contender's n-th pass has
    the same seeds."""
    for n in itertools.count():
        yield from rounds(workload, round_size, seed_offset=n * len(workload.prompts))


def _probe_extra_s(scheduler: DepthScheduler, first_step: int) -> float:
    """The realized time of the probes since `first_step` beyond a plain step's predicted time at their batch size
    (among the decisions the scheduler's history still holds)."""
    probes = [d for d in scheduler.history if d.step >= first_step and d.is_probe]
    return sum(d.realized_step_s - scheduler.cost_model.target_s(d.batch_size, 1) for d in probes)
