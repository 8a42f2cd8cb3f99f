"""Where adaptive loses to plain decoding where plain is best: the gap split into its parts, in one process.

    .venv/bin/python -m bench.scheduler_breakdown [--drafter eagle] [--batches 4,16,64] [--drain] [--repeats 6]

Contenders, interleaved and rotated per repeat like bench/scheduler.py, thread CPU of the engine's thread:
`plain` (fixed k = 0, no drafter: bench/scheduler.py's fixed-0), `plain-2` (the same again: how far an identical
contender moves, and what taking the max over contenders does to "adaptive / best fixed"), `plain-drafter` (k = 0
with the drafter attached and its state kept as the engine keeps it, asked nothing: a standing lease), `adaptive-
noprobe` (the warm DepthScheduler with probes spaced beyond any run) and `adaptive` (bench/scheduler.py's). Each
ratio is the median over repeats of the back-to-back pair's ratio to plain; `probes` and `probe_s` (the probes'
realized time beyond a plain step's predicted time, as a fraction of the run's thread CPU) from the scheduler.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import time
from pathlib import Path

from bench.scheduler_stats import paired_ratio, spread

CONTENDERS = ("plain", "plain-2", "plain-drafter", "adaptive-noprobe", "adaptive")
NO_PROBE_INTERVAL = 1 << 40


class StandingPlain:
    """A depth policy that always decodes plainly and leases it for good: the engine asks it (and the drafter's
    catch-up width) nothing, as under the adaptive scheduler's plain lease."""

    def __init__(self) -> None:
        from rollspec.scheduler.standing import PlainLease

        self.num_steps = 0
        self._lease = PlainLease(steps=1 << 40, min_batch_size=0)

    def choose_depth(self, batch_size: int, catch_up_tokens: int = 0) -> int:
        return 0

    def plain_lease(self):
        return self._lease

    def observe(self, batch_size, k, num_accepted, draft_time_s, target_time_s) -> None:
        self.num_steps += 1


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drafter", default="eagle", choices=["draft_model", "eagle"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--batches", default="4,16,64")
    parser.add_argument("--drain", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args()


def _run(workload, kind: str, depth, drafter_on: bool, round_size: int | None) -> dict:
    from bench.scheduler_runs import _drafter
    from rollspec.engine.engine import Engine

    config = workload.engine_config()
    engine = Engine(workload.policy.model, config, drafter=_drafter(workload, kind, config) if drafter_on else None,
                    depth=depth)
    requests = workload.requests()
    size = round_size or len(requests)
    stats = getattr(depth, "stats", None)
    first_step = stats.num_steps if stats is not None else 0
    start = time.thread_time()
    completions = [c for i in range(0, len(requests), size) for c in engine.generate(requests[i: i + size])]
    elapsed = time.thread_time() - start
    tokens = sum(len(c.token_ids) for c in completions)
    out = {"tokens_per_tcpu_s": tokens / elapsed, "tcpu_s": elapsed, "tokens": tokens}
    if stats is not None:
        after = depth.stats
        steps_by_k = [a - b for a, b in zip(after.num_steps_by_k, stats.num_steps_by_k)]
        probes = [d for d in depth.history if d.step >= first_step and d.is_probe]
        plain_s = {}
        extra_s = 0.0
        for d in probes:
            if d.batch_size not in plain_s:
                plain_s[d.batch_size] = depth.cost_model.target_s(d.batch_size, 1)
            extra_s += d.realized_step_s - plain_s[d.batch_size]
        num_steps = sum(steps_by_k)
        out |= {"num_steps": num_steps, "mean_k": sum(k * n for k, n in enumerate(steps_by_k)) / max(1, num_steps),
                "num_probes": after.num_probes - stats.num_probes, "num_checks": after.num_checks - stats.num_checks,
                "num_vetoed": after.num_vetoes - stats.num_vetoes,
                "probes_seen": len(probes), "probe_extra_frac": extra_s / elapsed}
    return out


def main() -> None:
    args = _args()
    import torch

    from bench.engine import _machine
    from bench.engine_runs import Workload
    from bench.scheduler import DRAIN_ROUNDS, MIN_STEADY_PROMPTS, STEADY_PROMPTS_PER_ROW
    from bench.scheduler_runs import adaptive_scheduler, profile_cost_model, run_depth
    from rollspec.engine.depth import FixedDepth
    from rollspec.models.zoo import ensure_zoo
    from rollspec.scheduler import DepthScheduler

    torch.set_num_threads(args.threads)
    zoo = ensure_zoo()
    settings = [(f"steady-b{b}", b, max(STEADY_PROMPTS_PER_ROW * b, MIN_STEADY_PROMPTS), None)
                for b in map(int, args.batches.split(",")) if b]
    if args.drain:
        settings.append(("draining-64", 64, 64 * DRAIN_ROUNDS, 64))
    rows = []
    for name, batch, num_prompts, round_size in settings:
        workload = Workload.from_zoo(zoo, batch=batch, temperature=args.temperature, max_new_tokens=160,
                                     num_prompts=num_prompts)
        costs = profile_cost_model(workload, args.drafter)
        warm = adaptive_scheduler(workload, copy.deepcopy(costs))
        config = dataclasses.replace(warm.config, probe_interval_steps=NO_PROBE_INTERVAL)
        noprobe = DepthScheduler(config, *copy.deepcopy(costs))
        for scheduler in (warm, noprobe):
            run_depth(workload, args.drafter, scheduler=scheduler, round_size=round_size)  # untimed warm-up
        runs: dict[str, list[dict]] = {c: [] for c in CONTENDERS}
        order = list(CONTENDERS)
        for repeat in range(args.repeats):
            for contender in order[repeat % len(order):] + order[: repeat % len(order)]:
                depth, drafter_on = {"plain": (FixedDepth(0), False), "plain-2": (FixedDepth(0), False),
                                     "plain-drafter": (StandingPlain(), True), "adaptive-noprobe": (noprobe, True),
                                     "adaptive": (warm, True)}[contender]
                runs[contender].append(_run(workload, args.drafter, depth, drafter_on, round_size))
        rates = {c: [r["tokens_per_tcpu_s"] for r in rs] for c, rs in runs.items()}
        meds = {c: statistics.median(v) for c, v in rates.items()}
        row = {"setting": name, "batch": batch,
               "median_ratio_vs_plain": {c: round(meds[c] / meds["plain"], 4) for c in CONTENDERS},
               "paired_ratio_vs_plain": {c: round(paired_ratio(rates[c], rates["plain"]), 4) for c in CONTENDERS},
               "spread": {c: round(spread(v), 4) for c, v in rates.items()},
               "tcpu_runs": {c: [round(x, 1) for x in v] for c, v in rates.items()},
               "max_of_two_plain_bias": round(meds["plain"] / max(meds["plain"], meds["plain-2"]), 4)}
        for c in ("adaptive-noprobe", "adaptive"):
            row[c] = {key: [r[key] for r in runs[c]] for key in ("mean_k", "num_steps", "num_probes", "num_checks",
                                                                  "num_vetoed", "probe_extra_frac")}
        rows.append(row)
        paired, adaptive = row["paired_ratio_vs_plain"], row["adaptive"]
        probe_pct = 100 * statistics.median(adaptive["probe_extra_frac"])
        print(f"{name:>12}: paired vs plain: plain-2 {paired['plain-2']:.3f} "
              f"plain-drafter {paired['plain-drafter']:.3f} adaptive-noprobe {paired['adaptive-noprobe']:.3f} "
              f"adaptive {paired['adaptive']:.3f} | probes {statistics.median(adaptive['num_probes'])} "
              f"(~{probe_pct:.2f}% of tcpu) mean k {statistics.median(adaptive['mean_k']):.3f} | max-of-two bias "
              f"{row['max_of_two_plain_bias']:.3f} | plain spread {row['spread']['plain']:.3f}", flush=True)
    out = {"command": f"python -m bench.scheduler_breakdown --drafter {args.drafter} --threads {args.threads} "
                      f"--repeats {args.repeats} --batches {args.batches}", "machine": _machine(args.threads),
           "rows": rows}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
