"""Where adaptive loses to plain decoding where plain is best: the gap split into its parts, in one process.

    .venv/bin/python -m bench.scheduler_breakdown [--drafter eagle] [--batches 4,16,64] [--drain] [--repeats 6]

Contenders, interleaved in bench/scheduler.py's order (run_order), thread CPU of the engine's thread, each one
bench/scheduler_runs.run_depth: `plain` (fixed k = 0, no drafter: bench/scheduler.py's fixed-0), `plain-2` (the
same again: how far an identical contender moves, and what taking the max over contenders does to "adaptive / best
fixed"), `plain-drafter` (k = 0 with the drafter attached and its state kept as the engine keeps it, asked
nothing: a standing lease, run_depth's `drafter_at_plain`), `adaptive-noprobe` (the warm DepthScheduler with
probes spaced beyond any run) and `adaptive` (bench/scheduler.py's). Each ratio is the median over repeats of the
back-to-back pair's ratio to plain, with a 95% bootstrap interval (`paired_ci95_vs_plain`; the adaptive ones also
vs plain-drafter); `probes` and `probe_s` (the probes' realized time beyond a plain step's predicted time, as a
fraction of the run's thread CPU) from the scheduler.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
from pathlib import Path

from bench.scheduler_stats import paired_ci, paired_ratio, spread

CONTENDERS = ("plain", "plain-2", "plain-drafter", "adaptive-noprobe", "adaptive")
NO_PROBE_INTERVAL = 1 << 40


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


def main() -> None:
    args = _args()
    import torch

    from bench.engine import _machine
    from bench.engine_runs import Workload
    from bench.scheduler import interleave, setting
    from bench.scheduler_runs import adaptive_scheduler, profile_cost_model, run_depth
    from rollspec.models.zoo import ensure_zoo
    from rollspec.scheduler import DepthScheduler

    torch.set_num_threads(args.threads)
    zoo = ensure_zoo()
    settings = [setting(b, False) for b in map(int, args.batches.split(",")) if b]
    if args.drain:
        settings.append(setting(64, True))
    rows = []
    for name, batch, num_prompts, round_size in settings:
        workload = Workload.from_zoo(zoo, batch=batch, temperature=args.temperature, max_new_tokens=160,
                                     num_prompts=num_prompts)
        costs = profile_cost_model(workload, args.drafter)
        warm = adaptive_scheduler(workload, copy.deepcopy(costs))
        config = dataclasses.replace(warm.config, probe_interval_steps=NO_PROBE_INTERVAL, explore_budget=0.0)
        noprobe = DepthScheduler(config, *copy.deepcopy(costs))
        for scheduler in (warm, noprobe):
            run_depth(workload, args.drafter, scheduler=scheduler, round_size=round_size)  # untimed warm-up
        how = {"plain": {"fixed_k": 0}, "plain-2": {"fixed_k": 0},
               "plain-drafter": {"fixed_k": 0, "drafter_at_plain": True},
               "adaptive-noprobe": {"scheduler": noprobe}, "adaptive": {"scheduler": warm}}
        runs: dict[str, list[dict]] = {c: [] for c in CONTENDERS}
        interleave(runs, list(CONTENDERS), args.repeats,
                   lambda c: run_depth(workload, args.drafter, round_size=round_size, **how[c]))
        rates = {c: [r["tokens_per_tcpu_s"] for r in rs] for c, rs in runs.items()}
        meds = {c: statistics.median(v) for c, v in rates.items()}
        row = {"setting": name, "batch": batch,
               "median_ratio_vs_plain": {c: round(meds[c] / meds["plain"], 4) for c in CONTENDERS},
               "paired_ratio_vs_plain": {c: round(paired_ratio(rates[c], rates["plain"]), 4) for c in CONTENDERS},
               "paired_ci95_vs_plain": {c: [round(x, 4) for x in paired_ci(rates[c], rates["plain"])[1:]]
                                        for c in CONTENDERS[1:]},
               "paired_ci95_vs_plain_drafter": {c: [round(x, 4) for x in paired_ci(rates[c],
                                                                                   rates["plain-drafter"])]
                                                for c in ("adaptive-noprobe", "adaptive")},
               "spread": {c: round(spread(v), 4) for c, v in rates.items()},
               "tcpu_runs": {c: [round(x, 1) for x in v] for c, v in rates.items()},
               "max_of_two_plain_bias": round(meds["plain"] / max(meds["plain"], meds["plain-2"]), 4)}
        for c in ("adaptive-noprobe", "adaptive"):
            row[c] = {key: [r[key] for r in runs[c]] for key in ("mean_k", "num_steps", "num_probes", "num_checks",
                                                                  "num_vetoes", "probe_extra_frac")}
        rows.append(row)
        paired, adaptive = row["paired_ratio_vs_plain"], row["adaptive"]
        probe_pct = 100 * statistics.median(adaptive["probe_extra_frac"])
        ci = {c: "[{:.3f}, {:.3f}]".format(*row["paired_ci95_vs_plain"][c]) for c in CONTENDERS[1:]}
        print(f"{name:>12}: paired vs plain (95% CI): plain-2 {paired['plain-2']:.3f} {ci['plain-2']} plain-drafter "
              f"{paired['plain-drafter']:.3f} {ci['plain-drafter']} adaptive-noprobe {paired['adaptive-noprobe']:.3f} "
              f"{ci['adaptive-noprobe']} adaptive {paired['adaptive']:.3f} {ci['adaptive']} | probes {statistics.median(adaptive['num_probes'])} "
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
