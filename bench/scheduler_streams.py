"""The scheduler benchmark's contenders as lockstep streams (bench/lockstep.py): each its own engine, drafter and
depth policy on the one loaded policy, serving the setting's workload round after round."""

from __future__ import annotations

import copy

from bench.engine_runs import Workload
from bench.lockstep import Stream
from bench.scheduler_runs import adaptive_scheduler, build_engine, depth_counters, endless_rounds
from rollspec.scheduler import CatchUpCost, CostModel, DepthScheduler


def fixed_stream(name: str, workload: Workload, kind: str, k: int, *, round_size: int | None,
                 drafter_at_plain: bool = False) -> Stream:
    """Fixed depth k through one engine (k = 0: plain decoding, no drafter unless `drafter_at_plain`)."""
    engine = build_engine(workload, kind, fixed_k=k, drafter_at_plain=drafter_at_plain)
    return Stream(name, _refill(engine, workload, round_size), lambda: depth_counters(engine.depth))


def warm_stream(name: str, workload: Workload, kind: str, scheduler: DepthScheduler, *,
                round_size: int | None) -> Stream:
    """One scheduler kept across rounds (warm it first), as a rollout actor's serves batch after batch."""
    engine = build_engine(workload, kind, scheduler=scheduler)
    return Stream(name, _refill(engine, workload, round_size), lambda: depth_counters(scheduler))


def cold_stream(name: str, workload: Workload, kind: str, costs: tuple[CostModel, CatchUpCost], *,
                round_size: int | None) -> Stream:
    """A new engine and a new scheduler on a fresh copy of the profiled costs every round (set up untimed, in
    `new_round`)."""
    current: list[DepthScheduler] = []  # this round's
    retired: dict[str, float] = {}  # the earlier rounds' schedulers' totals
    batches = endless_rounds(workload, round_size)

    def new_round():
        if current:
            _accumulate(retired, depth_counters(current.pop()))
        current.append(adaptive_scheduler(workload, copy.deepcopy(costs)))
        engine = build_engine(workload, kind, scheduler=current[0])
        _add(engine, next(batches))
        return engine

    def counters() -> dict[str, float]:
        return _accumulate(dict(retired), depth_counters(current[0])) if current else dict(retired)

    return Stream(name, new_round, counters)


def _refill(engine, workload: Workload, round_size: int | None):
    """The engine, given the next round's requests each time it is asked (endless_rounds)."""
    batches = endless_rounds(workload, round_size)

    def new_round():
        _add(engine, next(batches))
        return engine

    return new_round


def _accumulate(totals: dict[str, float], counts: dict[str, float]) -> dict[str, float]:
    for key, value in counts.items():
        totals[key] = totals.get(key, 0) + value
    return totals


def _add(engine, requests) -> None:
    for request in requests:
        engine.add_request(request)


def block_runs(stream: Stream) -> list[dict]:
    """A stream's blocks as bench/scheduler.py's runs: the three rates, tokens, steps, rounds begun, mean k and the
    depth policy's other counters (checks, vetoes, measured starts, probes) over the block."""
    out = []
    for block in stream.blocks:
        counts = dict(block.counters)
        steps, k_steps = counts.pop("steps", 0), counts.pop("k_steps", 0)
        out.append(block.rates() | {"tokens": block.tokens, "num_steps": block.steps, "rounds": block.rounds,
                                    "mean_k": k_steps / max(1, steps)} | counts)
    return out


def contender_streams(workload: Workload, kind: str, fixed_ks, *, warm: DepthScheduler,
                      costs: tuple[CostModel, CatchUpCost], round_size: int | None) -> dict[str, Stream]:
    """bench/scheduler.py's contenders: `fixed-k` for each k, `adaptive` (the warm scheduler) and `adaptive-cold`
    (a fresh copy of `costs` every round)."""
    streams = {f"fixed-{k}": fixed_stream(f"fixed-{k}", workload, kind, k, round_size=round_size) for k in fixed_ks}
    streams["adaptive"] = warm_stream("adaptive", workload, kind, warm, round_size=round_size)
    streams["adaptive-cold"] = cold_stream("adaptive-cold", workload, kind, costs, round_size=round_size)
    return streams
