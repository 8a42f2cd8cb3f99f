"""Adaptive speculation depth vs every fixed k, on the trained zoo, in one run.

    .venv/bin/python -m bench.scheduler [--drafter eagle] [--threads 2] [--repeats 6] [--temperature 1.0]

Settings: steady batches of B rows (max(6B, 192) prompts through B rows) for B in 1, 4, 16,
64, 128, and a draining batch (64 prompts at once, no refill: B falls to 1 with the tasks'
spread of response lengths), four such rounds one after the other per timed run. The zoo's
responses are 5-22 tokens, so shorter runs (10-45 steps) moved by more than 3% between
repeats. Contenders: fixed k in {0, 1, 2, 4, 8} and the adaptive DepthScheduler
with a cost model profiled at start-up (profiling time excluded, reported separately), in two
forms: `adaptive` keeps one scheduler across its runs after one untimed warm-up run, as a
rollout actor's serves batch after batch; `adaptive-cold` starts every run from the fresh
profile and the acceptance prior (a whole run is 40-1,200 steps here). Every repeat runs
each contender once, in an order rotated from repeat to repeat. Tokens per wall second, per
CPU second of the process and per CPU second of the engine's thread (one torch thread: its
work, robust to co-tenants); in thread CPU also adaptive vs the best fixed k chosen on the
other half of the repeats (`tcpu_ratio_vs_best_fixed_split`, unbiased: bench/scheduler_stats.py)
beside the post-hoc best of the medians, vs plain per back-to-back pair, and each contender's
spread over repeats. Writes bench/results/scheduler.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from datetime import date
from pathlib import Path

from bench.scheduler_stats import paired_ratio, split_half_ratio, spread

RESULTS = Path(__file__).resolve().parent / "results" / "scheduler.json"
FIXED_KS = (0, 1, 2, 4, 8)


MIN_STEADY_PROMPTS = 192
STEADY_PROMPTS_PER_ROW = 6
DRAIN_ROUNDS = 4


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drafter", default="eagle", choices=["draft_model", "eagle", "mtp", "ngram"])
    parser.add_argument("--threads", type=int, default=2)
    # Even, for the split-half estimate; 6 resolve ~3% on a quiet 2-core machine where 3 did not.
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--batches", default="1,4,16,64,128")
    # At temperature 1 every contender draws other samples (a k changes how many uniforms a row uses), so
    # runs differ in length and tail as well as in speed; at 0 every contender does the same work.
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


def main() -> None:
    args = _args()
    import torch

    from bench.engine import _machine
    from bench.engine_runs import Workload
    from bench.scheduler_runs import adaptive_scheduler, profile_cost_model, run_depth
    from rollspec.models.zoo import ensure_zoo

    torch.set_num_threads(args.threads)
    zoo = ensure_zoo()
    # At least MIN_STEADY_PROMPTS per steady run: 3B prompts at B = 1 was ~36 tokens (~60 ms a run), and
    # such runs moved by +/-20% between repeats, more than the differences being measured.
    settings = ([(f"steady-b{b}", b, max(STEADY_PROMPTS_PER_ROW * b, MIN_STEADY_PROMPTS), None)
                 for b in map(int, args.batches.split(","))]
                + [("draining-64", 64, 64 * DRAIN_ROUNDS, 64)])
    rows = []
    started_all = time.perf_counter()
    for name, batch, num_prompts, round_size in settings:
        workload = Workload.from_zoo(zoo, batch=batch, temperature=args.temperature, max_new_tokens=160, num_prompts=num_prompts)
        started = time.perf_counter()
        costs = profile_cost_model(workload, args.drafter)
        profile_s = time.perf_counter() - started
        fresh = copy.deepcopy(costs)
        warm = adaptive_scheduler(workload, costs)
        run_depth(workload, args.drafter, scheduler=warm, round_size=round_size)  # untimed warm-up
        runs: dict[str, list[dict]] = {f"fixed-{k}": [] for k in FIXED_KS} | {"adaptive": [], "adaptive-cold": []}
        order = list(runs)
        for repeat in range(args.repeats):  # interleaved so machine drift hits every contender alike
            for name_ in order[repeat % len(order):] + order[: repeat % len(order)]:  # rotated: no fixed neighbour
                if name_.startswith("fixed"):
                    run = run_depth(workload, args.drafter, fixed_k=int(name_[6:]), round_size=round_size)
                elif name_ == "adaptive":
                    run = run_depth(workload, args.drafter, scheduler=warm, round_size=round_size)
                else:
                    cold = adaptive_scheduler(workload, copy.deepcopy(fresh))
                    run = run_depth(workload, args.drafter, scheduler=cold, round_size=round_size)
                runs[name_].append(run)
        result = {name_: {"tokens_per_s": statistics.median(r["tokens_per_s"] for r in rs),
                          "runs": [round(r["tokens_per_s"], 1) for r in rs],
                          "tokens_per_cpu_s": statistics.median(r["tokens_per_cpu_s"] for r in rs),
                          "cpu_runs": [round(r["tokens_per_cpu_s"], 1) for r in rs],
                          "tokens_per_tcpu_s": statistics.median(r["tokens_per_tcpu_s"] for r in rs),
                          "tcpu_runs": [round(r["tokens_per_tcpu_s"], 1) for r in rs],
                          "tcpu_spread": round(spread([r["tokens_per_tcpu_s"] for r in rs]), 4),
                          "mean_k": statistics.median(r["mean_k"] for r in rs),
                          "steps": [r["num_steps"] for r in rs], "tokens": [r["tokens"] for r in rs]}
                  | ({"checks": [r["num_checks"] for r in rs], "vetoed": [r["num_vetoes"] for r in rs],
                      "probes": [r["num_probes"] for r in rs]} if name_.startswith("adaptive") else {})
                  for name_, rs in runs.items()}
        best_fixed = max((v["tokens_per_s"], n) for n, v in result.items() if n.startswith("fixed"))
        plain = result["fixed-0"]["tokens_per_s"]
        row = {"setting": name, "batch": batch, "prompts": num_prompts, "profile_s": round(profile_s, 2),
               "contenders": result, "best_fixed": best_fixed[1],
               "ratio_vs_best_fixed": result["adaptive"]["tokens_per_s"] / best_fixed[0],
               "ratio_vs_plain": result["adaptive"]["tokens_per_s"] / plain,
               "cold_ratio_vs_best_fixed": result["adaptive-cold"]["tokens_per_s"] / best_fixed[0],
               "cold_ratio_vs_plain": result["adaptive-cold"]["tokens_per_s"] / plain}
        best_cpu = max(v["tokens_per_cpu_s"] for n, v in result.items() if n.startswith("fixed"))
        for contender, prefix in (("adaptive", "cpu_"), ("adaptive-cold", "cpu_cold_")):
            rate = result[contender]["tokens_per_cpu_s"]
            row[f"{prefix}ratio_vs_best_fixed"] = rate / best_cpu
            row[f"{prefix}ratio_vs_plain"] = rate / result["fixed-0"]["tokens_per_cpu_s"]
        row |= _thread_cpu_ratios(runs)
        rows.append(row)
        print(f"{name:>12}: adaptive {result['adaptive']['tokens_per_s']:8.1f} tok/s (mean k "
              f"{result['adaptive']['mean_k']:.2f}) | best fixed {best_fixed[1]} {best_fixed[0]:8.1f} | "
              f"vs best {row['ratio_vs_best_fixed']:.3f} vs plain {row['ratio_vs_plain']:.3f} | cold: vs best "
              f"{row['cold_ratio_vs_best_fixed']:.3f} vs plain {row['cold_ratio_vs_plain']:.3f} | thread CPU: vs best "
              f"{row['tcpu_ratio_vs_best_fixed']:.3f} split {row['tcpu_ratio_vs_best_fixed_split'] or 0:.3f} vs plain "
              f"{row['tcpu_ratio_vs_plain']:.3f} paired {row['tcpu_paired_ratio_vs_plain']:.3f} | plain spread "
              f"{result['fixed-0']['tcpu_spread']:.3f}", flush=True)
    draining = next(r for r in rows if r["setting"].startswith("draining"))
    summary = {"min_ratio_vs_best_fixed": round(min(r["ratio_vs_best_fixed"] for r in rows), 3),
               "min_ratio_vs_plain": round(min(r["ratio_vs_plain"] for r in rows), 3),
               "draining_speedup_vs_plain": round(draining["ratio_vs_plain"], 3),
               "cold_min_ratio_vs_best_fixed": round(min(r["cold_ratio_vs_best_fixed"] for r in rows), 3),
               "cold_min_ratio_vs_plain": round(min(r["cold_ratio_vs_plain"] for r in rows), 3),
               "drafter": args.drafter}
    for prefix in ("cpu_", "cpu_cold_"):
        for ratio in ("ratio_vs_best_fixed", "ratio_vs_plain"):
            summary[f"{prefix}min_{ratio}"] = round(min(r[f"{prefix}{ratio}"] for r in rows), 3)
    for key in ("ratio_vs_best_fixed", "ratio_vs_best_fixed_split", "ratio_vs_plain", "paired_ratio_vs_plain",
                "cold_ratio_vs_plain"):
        values = [r[f"tcpu_{key}"] for r in rows if r[f"tcpu_{key}"] is not None]
        summary[f"tcpu_min_{key}"] = round(min(values), 3) if values else None
    summary["tcpu_draining_speedup_vs_plain"] = round(draining["tcpu_ratio_vs_plain"], 3)
    summary["tcpu_max_plain_spread"] = round(max(r["contenders"]["fixed-0"]["tcpu_spread"] for r in rows), 3)
    out = {"command": f"python -m bench.scheduler --drafter {args.drafter} --threads {args.threads} "
                      f"--repeats {args.repeats} --batches {args.batches} --temperature {args.temperature}",
           "date": date.today().isoformat(), "machine": _machine(args.threads), "rows": rows, "summary": summary,
           "run_s": round(time.perf_counter() - started_all, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


def _thread_cpu_ratios(runs: dict[str, list[dict]]) -> dict:
    """Adaptive vs plain and vs the best fixed k in tokens per thread-CPU second: post hoc (best of the medians,
    biased upwards), split-half (unbiased, see bench/scheduler_stats.py), and paired with plain per repeat."""
    rates = {name: [r["tokens_per_tcpu_s"] for r in rs] for name, rs in runs.items()}
    fixed = {name: v for name, v in rates.items() if name.startswith("fixed")}
    med = {name: statistics.median(v) for name, v in rates.items()}
    split = split_half_ratio(rates["adaptive"], fixed)
    return {"tcpu_ratio_vs_best_fixed": med["adaptive"] / max(med[n] for n in fixed),
            "tcpu_ratio_vs_best_fixed_split": split[0] if split else None,
            "tcpu_best_fixed_split": split[1] if split else None,
            "tcpu_ratio_vs_plain": med["adaptive"] / med["fixed-0"],
            "tcpu_paired_ratio_vs_plain": paired_ratio(rates["adaptive"], rates["fixed-0"]),
            "tcpu_cold_ratio_vs_plain": med["adaptive-cold"] / med["fixed-0"]}


if __name__ == "__main__":
    main()
