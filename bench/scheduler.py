"""Adaptive speculation depth vs every fixed k, on the trained zoo, in one run.

    .venv/bin/python -m bench.scheduler [--drafter eagle] [--threads 2] [--repeats 4] [--focus-repeats 24]

Settings: steady batches of B rows (max(6B, 192) prompts through B rows) for B in 1, 4, 16,
64, 128, and a draining batch (64 prompts at once, no refill: B falls to 1 with the tasks'
spread of response lengths), four such rounds one after the other per timed run. The zoo's
responses are 5-22 tokens, so shorter runs (10-45 steps) moved by more than 3% between
repeats. Contenders: fixed k in {0, 1, 2, 4, 8} and the adaptive DepthScheduler
with a cost model profiled at start-up (profiling time excluded, reported separately), in two
forms: `adaptive` keeps one scheduler across its runs after one untimed warm-up run, as a
rollout actor's serves batch after batch; `adaptive-cold` starts every run from the fresh
profile and the acceptance prior (a whole run is 40-1,200 steps here).

Two phases per setting. Screening: `--repeats` runs of every contender. Focus: `--focus-repeats` more of the
contenders the headline rests on: adaptive, plain (fixed-0) and each fixed k within FOCUS_MARGIN of the fastest
fixed k in screening (adaptive-cold and the slower fixed k stay at the screening repeats). Within a repeat the
contenders run back to back in a Williams order (run_order: each runs right after each other equally often).
Tokens per wall second (the headline), per CPU second of the process and per CPU second of the engine's thread
(one torch thread: its work, robust to co-tenants). A cell's ratio (adaptive vs plain, vs the best fixed k: the
fixed contender with the highest median) is the median over repeats of each back-to-back pair's ratio, with a 95%
bootstrap interval beside it (`*_ci95`; `summary.*max_ci95_halfwidth` is the widest, the bench's resolution); a
median of paired ratios cancels the drift a ratio of medians keeps. On a quiet 2-core machine identical runs
spread +-4%: 6 repeats of everything left a cell +-3%, ~28 pairs leave about +-1%. In thread CPU also adaptive vs
the best fixed k chosen on the other half of the repeats (`tcpu_ratio_vs_best_fixed_split`, unbiased:
bench/scheduler_stats.py). Writes bench/results/scheduler.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from datetime import date
from pathlib import Path

from bench.scheduler_stats import paired_ci, split_half_ratio, spread

RESULTS = Path(__file__).resolve().parent / "results" / "scheduler.json"
FIXED_KS = (0, 1, 2, 4, 8)


MIN_STEADY_PROMPTS = 192
STEADY_PROMPTS_PER_ROW = 6
DRAIN_ROUNDS = 4
FOCUS_MARGIN = 0.05  # a fixed k this close to the fastest one in screening stays a candidate for the best


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drafter", default="eagle", choices=["draft_model", "eagle", "mtp", "ngram"])
    parser.add_argument("--threads", type=int, default=2)
    # Screening repeats of every contender; even, for the split-half estimate.
    parser.add_argument("--repeats", type=int, default=4)
    # Further repeats of the contenders the headline rests on (_focus): ~28 pairs put a cell's 95% interval
    # within about +-1% on a quiet machine, where 6 repeats of everything left +-3%.
    parser.add_argument("--focus-repeats", type=int, default=24)
    parser.add_argument("--batches", default="1,4,16,64,128")  # steady cells; "" leaves the draining batch alone
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
                 for b in map(int, filter(None, args.batches.split(",")))]
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

        def run(contender: str) -> dict:
            if contender.startswith("fixed"):
                return run_depth(workload, args.drafter, fixed_k=int(contender[6:]), round_size=round_size)
            scheduler = warm if contender == "adaptive" else adaptive_scheduler(workload, copy.deepcopy(fresh))
            return run_depth(workload, args.drafter, scheduler=scheduler, round_size=round_size)

        runs: dict[str, list[dict]] = {f"fixed-{k}": [] for k in FIXED_KS} | {"adaptive": [], "adaptive-cold": []}
        interleave(runs, list(runs), args.repeats, run)
        focus = _focus(runs)
        interleave(runs, focus, args.focus_repeats, run)
        # Per run, the adaptive's mean k beside its checks, vetoes and probes: a cell's median ratio mixes runs at
        # the depths the warm scheduler settles at, and `mean_k` above is only their median.
        result = {name_: _contender(rs) | ({"checks": [r["num_checks"] for r in rs],
                                            "vetoed": [r["num_vetoes"] for r in rs],
                                            "measured_starts": [r["num_measured_starts"] for r in rs],
                                            "probes": [r["num_probes"] for r in rs],
                                            "mean_ks": [round(r["mean_k"], 2) for r in rs]}
                                           if name_.startswith("adaptive") else {})
                  for name_, rs in runs.items()}
        row = {"setting": name, "batch": batch, "prompts": num_prompts, "profile_s": round(profile_s, 2),
               "focus": focus, "contenders": result}
        for unit, prefix in (("tokens_per_s", ""), ("tokens_per_cpu_s", "cpu_"), ("tokens_per_tcpu_s", "tcpu_")):
            row |= _cell_ratios(runs, unit, prefix, focus)
        row |= _thread_cpu_split(runs, focus)
        rows.append(row)
        ci = row["ratio_vs_best_fixed_ci95"]
        print(f"{name:>12}: adaptive {result['adaptive']['tokens_per_s']:8.1f} tok/s (mean k "
              f"{result['adaptive']['mean_k']:.2f}) | best fixed {row['best_fixed']} | vs best "
              f"{row['ratio_vs_best_fixed']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] vs plain {row['ratio_vs_plain']:.3f} | "
              f"cold vs best {row['cold_ratio_vs_best_fixed']:.3f} | thread CPU: vs best "
              f"{row['tcpu_ratio_vs_best_fixed']:.3f} [{row['tcpu_ratio_vs_best_fixed_ci95'][0]:.3f}, "
              f"{row['tcpu_ratio_vs_best_fixed_ci95'][1]:.3f}] split {row['tcpu_ratio_vs_best_fixed_split'] or 0:.3f} "
              f"vs plain {row['tcpu_ratio_vs_plain']:.3f} | runs {len(runs['adaptive'])}, plain spread "
              f"{result['fixed-0']['tcpu_spread']:.3f}", flush=True)
    draining = next(r for r in rows if r["setting"].startswith("draining"))
    summary = {"drafter": args.drafter}
    for prefix in ("", "cpu_", "tcpu_"):
        for ratio in ("ratio_vs_best_fixed", "ratio_vs_plain", "cold_ratio_vs_best_fixed", "cold_ratio_vs_plain"):
            summary[f"{prefix}min_{ratio}".replace("min_cold_", "cold_min_")] = round(
                min(r[f"{prefix}{ratio}"] for r in rows), 3)
        summary[f"{prefix}draining_speedup_vs_plain"] = round(draining[f"{prefix}ratio_vs_plain"], 3)
        # The resolution: the widest 95% interval of a cell's headline ratios, as +- half its width.
        summary[f"{prefix}max_ci95_halfwidth"] = round(max(
            (r[f"{prefix}{ratio}_ci95"][1] - r[f"{prefix}{ratio}_ci95"][0]) / 2
            for r in rows for ratio in ("ratio_vs_best_fixed", "ratio_vs_plain")), 4)
    splits = [r["tcpu_ratio_vs_best_fixed_split"] for r in rows if r["tcpu_ratio_vs_best_fixed_split"] is not None]
    summary["tcpu_min_ratio_vs_best_fixed_split"] = round(min(splits), 3) if splits else None
    summary["tcpu_max_plain_spread"] = round(max(r["contenders"]["fixed-0"]["tcpu_spread"] for r in rows), 3)
    out = {"command": f"python -m bench.scheduler --drafter {args.drafter} --threads {args.threads} "
                      f"--repeats {args.repeats} --focus-repeats {args.focus_repeats} --batches {args.batches} "
                      f"--temperature {args.temperature}",
           "date": date.today().isoformat(), "machine": _machine(args.threads), "rows": rows, "summary": summary,
           "run_s": round(time.perf_counter() - started_all, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


def run_order(contenders: list[str], repeat: int) -> list[str]:
    """The order of the contenders in a repeat: a Williams design, in which over every n repeats (2n for an odd
    number n of contenders) each contender runs right after each other one equally often. Rotating one order kept
    its cyclic neighbours: a contender always ran right after the same one, and in a breakdown at B = 64 plain's copy
    (always right after plain) measured 1.018 [1.008, 1.034] of plain (load ~3)."""
    n = len(contenders)
    base = [0]
    for i in range(1, n):  # 0, 1, n - 1, 2, n - 2, ...
        base.append((i + 1) // 2 if i % 2 else n - i // 2)
    cycle = repeat % (n if n % 2 == 0 else 2 * n)
    order = [contenders[(x + cycle) % n] for x in base]
    return order[::-1] if cycle >= n else order


def interleave(runs: dict[str, list[dict]], contenders: list[str], repeats: int, run) -> None:
    """`repeats` runs of each contender (appended to `runs`), interleaved so machine drift hits every contender
    alike (run_order)."""
    for repeat in range(repeats):
        for name in run_order(contenders, repeat):
            runs[name].append(run(name))


def _focus(runs: dict[str, list[dict]]) -> list[str]:
    """The contenders the headline ratios rest on, given the screening repeats: adaptive, plain, and every fixed k
    within FOCUS_MARGIN of the fastest fixed k in thread CPU (a candidate for the best fixed k)."""
    fixed = {n: statistics.median(r["tokens_per_tcpu_s"] for r in rs) for n, rs in runs.items() if n.startswith("fixed")}
    best = max(fixed.values())
    return ["adaptive"] + [n for n, rate in fixed.items() if n == "fixed-0" or rate >= (1.0 - FOCUS_MARGIN) * best]


def _contender(rs: list[dict]) -> dict:
    out = {"mean_k": statistics.median(r["mean_k"] for r in rs), "steps": [r["num_steps"] for r in rs],
           "tokens": [r["tokens"] for r in rs]}
    for unit, key in (("tokens_per_s", "runs"), ("tokens_per_cpu_s", "cpu_runs"), ("tokens_per_tcpu_s", "tcpu_runs")):
        out[unit] = statistics.median(r[unit] for r in rs)
        out[key] = [round(r[unit], 1) for r in rs]
    out["tcpu_spread"] = round(spread([r["tokens_per_tcpu_s"] for r in rs]), 4)
    return out


def _cell_ratios(runs: dict[str, list[dict]], unit: str, prefix: str, focus: list[str]) -> dict:
    """Adaptive (and adaptive-cold) vs plain and vs the best fixed k in `unit`: the median over repeats of each
    back-to-back pair's ratio, with its 95% bootstrap interval (bench/scheduler_stats.paired_ci). The best fixed k is
    the focused fixed contender with the highest median, over the same repeats as adaptive's: a screened-out one's
    few wall-clock runs were once the "best" under load (B = 16, fixed-2 over 4 runs against plain's 28), and the
    focus repeats make the choice among near-ties precise."""
    rates = {name: [r[unit] for r in rs] for name, rs in runs.items()}
    best = max((n for n in focus if n.startswith("fixed")), key=lambda n: statistics.median(rates[n]))
    out = {f"{prefix}best_fixed" if prefix else "best_fixed": best}
    for contender, tag in (("adaptive", ""), ("adaptive-cold", "cold_")):
        for baseline, ratio in ((best, "ratio_vs_best_fixed"), ("fixed-0", "ratio_vs_plain")):
            median, low, high = paired_ci(rates[contender], rates[baseline])
            out[f"{prefix}{tag}{ratio}"] = round(median, 4)
            out[f"{prefix}{tag}{ratio}_ci95"] = [round(low, 4), round(high, 4)]
    return out


def _thread_cpu_split(runs: dict[str, list[dict]], focus: list[str]) -> dict:
    """Adaptive vs the best fixed k in thread CPU with the best chosen on the other half of the repeats (split-half,
    unbiased: bench/scheduler_stats.py), among the focused fixed contenders (the others were screened out)."""
    rates = {name: [r["tokens_per_tcpu_s"] for r in runs[name]] for name in focus}
    split = split_half_ratio(rates["adaptive"], {n: v for n, v in rates.items() if n.startswith("fixed")})
    return {"tcpu_ratio_vs_best_fixed_split": round(split[0], 4) if split else None,
            "tcpu_best_fixed_split": split[1] if split else None}


if __name__ == "__main__":
    main()
