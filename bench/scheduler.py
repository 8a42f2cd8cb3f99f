"""Adaptive speculation depth vs every fixed k, on the trained zoo, in one run.

    .venv/bin/python -m bench.scheduler [--drafter eagle] [--threads 1] [--blocks 4] [--focus-blocks 12] [--batches 1,4,16,64,128] [--no-drain]

Settings: steady batches of B rows (max(6B, 192) prompts through B rows, refilled as rows finish, is one round) for
B in 1, 4, 16, 64, 128, and a draining batch (rounds of 64 prompts at once, no refill: B falls to 1 with the tasks'
spread of response lengths). Contenders: fixed k in {0, 1, 2, 4, 8} and the adaptive DepthScheduler with a cost model
profiled at start-up (profiling time excluded, reported separately), in two forms: `adaptive` keeps one scheduler
across its rounds after one untimed warm-up run, as a rollout actor's serves batch after batch; `adaptive-cold`
starts every round from a fresh copy of the profile and the acceptance prior (engine set-up untimed).
Every pass over the prompts samples with other seeds, the same for every contender's n-th pass
(scheduler_runs.endless_rounds): at temperature 1 a contender replaying one sample path per prompt carried its luck.

Lockstep (bench/lockstep.py): every contender is a stream, its own engine, drafter and depth policy on the one loaded
policy, serving the setting's rounds one after another; one loop always advances the stream that has used the least
thread CPU by one engine step, timed around the call. Whole runs one after another (this bench until 2026-11-27) met
machine drift of +-10-15% between consecutive runs on the shared VM, and cells where adaptive and plain ran the same
steps read 0.94-1.03; in lockstep drift hits every stream alike. Each stream's time is cut into blocks of `--block-s`
thread-CPU seconds (block j of every stream covers the same stretch of wall time) after `--warmup-s` untimed.

Two phases per setting. Screening: `--blocks` blocks of every contender. Focus: `--focus-blocks` more of the
contenders the headline rests on: adaptive, plain (fixed-0) and each fixed k within FOCUS_MARGIN of the fastest fixed
k in screening (adaptive-cold and the slower fixed k stay at the screening blocks). Tokens per wall second (the
headline), per CPU second of the process and per CPU second of the engine's thread (one torch thread: its work,
robust to co-tenants). A cell's ratio (adaptive vs plain, vs the best fixed k: the fixed contender with the highest
median) is the median over blocks of each block pair's ratio, with a 95% bootstrap interval beside it (`*_ci95`;
`summary.*max_ci95_halfwidth` is the widest, the bench's resolution). In thread CPU also adaptive vs the best fixed k
chosen on the other half of the blocks (`tcpu_ratio_vs_best_fixed_split`, unbiased: bench/scheduler_stats.py).
bench/scheduler_lockstep_check.py measures the resolution (plain vs a copy of itself) and checks that interleaving
steps does not favour a contender (fixed k / plain in lockstep vs whole runs): on the shared VM plain steps slowed more
than speculative ones when interleaved, and lockstep read fixed k = 1 / plain at B = 64 2-4% above sequential runs
(BENCHMARKS.md, 2026-11-27 "in lockstep"); like against like (plain vs plain, speculation vs speculation) is not
affected. Writes bench/results/scheduler.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from datetime import date
from pathlib import Path

from bench.lockstep import Clocks, Stream, run_lockstep, warm_up
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
    parser.add_argument("--threads", type=int, default=1)
    # Thread-CPU seconds per block and stream: 1 s holds ~14 prompts at B = 1 and ~11 draining rounds; a block's
    # rate also moves with the part of the workload it holds (a round's 50 ms prefill at B = 64), which longer
    # blocks average but fewer blocks resolve worse (16 blocks of 1-4 s: about the same interval).
    parser.add_argument("--block-s", type=float, default=1.0)
    # Screening blocks of every contender; even, for the split-half estimate.
    parser.add_argument("--blocks", type=int, default=4)
    # Further blocks of the contenders the headline rests on (_focus).
    parser.add_argument("--focus-blocks", type=int, default=12)
    # Untimed steps of every stream first: first-touch of its caches, the drafters' lazy set-up.
    parser.add_argument("--warmup-s", type=float, default=0.5)
    parser.add_argument("--batches", default="1,4,16,64,128")  # steady cells; "" leaves the draining batch alone
    parser.add_argument("--drain", action=argparse.BooleanOptionalAction, default=True)  # the draining batch too
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
    from bench.scheduler_streams import contender_streams
    from rollspec.models.zoo import ensure_zoo

    torch.set_num_threads(args.threads)
    zoo = ensure_zoo()
    settings = [setting(b, False) for b in map(int, filter(None, args.batches.split(",")))]
    settings += [setting(64, True)] if args.drain else []
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
        started = time.perf_counter()
        streams = contender_streams(workload, args.drafter, FIXED_KS, warm=warm, costs=fresh, round_size=round_size)
        runs, focus = _measure(streams, args)
        lockstep_s = time.perf_counter() - started
        # Per block, the adaptive's mean k beside its checks, vetoes and probes: a cell's median ratio mixes blocks at
        # the depths the warm scheduler settles at, and `mean_k` above is only their median.
        result = {name_: _contender(rs) | ({"checks": [r["num_checks"] for r in rs],
                                            "vetoed": [r["num_vetoes"] for r in rs],
                                            "measured_starts": [r["num_measured_starts"] for r in rs],
                                            "probes": [r["num_probes"] for r in rs],
                                            "mean_ks": [round(r["mean_k"], 2) for r in rs]}
                                           if name_.startswith("adaptive") else {})
                  for name_, rs in runs.items()}
        row = {"setting": name, "batch": batch, "prompts": num_prompts, "profile_s": round(profile_s, 2),
               "lockstep_s": round(lockstep_s, 1), "focus": focus, "contenders": result}
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
              f"vs plain {row['tcpu_ratio_vs_plain']:.3f} | blocks {len(runs['adaptive'])}, plain spread "
              f"{result['fixed-0']['tcpu_spread']:.3f} | {lockstep_s:.0f} s", flush=True)
    draining = next((r for r in rows if r["setting"].startswith("draining")), None)
    summary = {"drafter": args.drafter}
    for prefix in ("", "cpu_", "tcpu_"):
        for ratio in ("ratio_vs_best_fixed", "ratio_vs_plain", "cold_ratio_vs_best_fixed", "cold_ratio_vs_plain"):
            summary[f"{prefix}min_{ratio}".replace("min_cold_", "cold_min_")] = round(
                min(r[f"{prefix}{ratio}"] for r in rows), 3)
        summary[f"{prefix}draining_speedup_vs_plain"] = round(draining[f"{prefix}ratio_vs_plain"], 3) if draining else None
        # The resolution: the widest 95% interval of a cell's headline ratios, as +- half its width.
        summary[f"{prefix}max_ci95_halfwidth"] = round(max(
            (r[f"{prefix}{ratio}_ci95"][1] - r[f"{prefix}{ratio}_ci95"][0]) / 2
            for r in rows for ratio in ("ratio_vs_best_fixed", "ratio_vs_plain")), 4)
    splits = [r["tcpu_ratio_vs_best_fixed_split"] for r in rows if r["tcpu_ratio_vs_best_fixed_split"] is not None]
    summary["tcpu_min_ratio_vs_best_fixed_split"] = round(min(splits), 3) if splits else None
    summary["tcpu_max_plain_spread"] = round(max(r["contenders"]["fixed-0"]["tcpu_spread"] for r in rows), 3)
    out = {"command": f"python -m bench.scheduler --drafter {args.drafter} --threads {args.threads} "
                      f"--block-s {args.block_s} --blocks {args.blocks} --focus-blocks {args.focus_blocks} --warmup-s "
                      f"{args.warmup_s} --batches {args.batches} {'' if args.drain else '--no-drain '}"
                      f"--temperature {args.temperature}",
           "date": date.today().isoformat(), "machine": _machine(args.threads), "rows": rows, "summary": summary,
           "run_s": round(time.perf_counter() - started_all, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


def setting(batch: int, draining: bool) -> tuple[str, int, int, int | None]:
    """A setting's name, batch size, prompts and round size: steady, max(6B, 192) prompts through B rows (refilled as
    rows finish) in one round; draining, DRAIN_ROUNDS rounds of B prompts at once, each run dry before the next.
    At least MIN_STEADY_PROMPTS a steady round: 3B prompts at B = 1 was ~36 tokens (~60 ms), and such whole runs
    moved by +/-20% between repeats."""
    if draining:
        return f"draining-{batch}", batch, batch * DRAIN_ROUNDS, batch
    return f"steady-b{batch}", batch, max(STEADY_PROMPTS_PER_ROW * batch, MIN_STEADY_PROMPTS), None


def _measure(streams: dict[str, Stream], args: argparse.Namespace,
             clocks: Clocks = Clocks()) -> tuple[dict[str, list[dict]], list[str]]:
    """The streams in lockstep: untimed warm-up of all, screening blocks of all, then focus blocks of the contenders
    the headline rests on (_focus), going on where they were. Returns every contender's blocks and the focus."""
    from bench.scheduler_streams import block_runs

    everyone = list(streams.values())
    warm_up(everyone, args.warmup_s, clocks)
    run_lockstep(everyone, until_s=args.blocks * args.block_s, block_s=args.block_s, clocks=clocks)
    focus = _focus({name: block_runs(stream) for name, stream in streams.items()})
    run_lockstep([streams[name] for name in focus], until_s=(args.blocks + args.focus_blocks) * args.block_s,
                 block_s=args.block_s, clocks=clocks)
    return {name: block_runs(stream) for name, stream in streams.items()}, focus


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
    """`repeats` whole runs of each contender (appended to `runs`), interleaved so slow machine drift hits every
    contender alike (run_order): bench/scheduler_breakdown.py's and the lockstep check's whole runs."""
    for repeat in range(repeats):
        for name in run_order(contenders, repeat):
            runs[name].append(run(name))


def _focus(runs: dict[str, list[dict]]) -> list[str]:
    """The contenders the headline ratios rest on, given the screening blocks: adaptive, plain, and every fixed k
    within FOCUS_MARGIN of the fastest fixed k in thread CPU (a candidate for the best fixed k)."""
    fixed = {n: statistics.median(r["tokens_per_tcpu_s"] for r in rs) for n, rs in runs.items() if n.startswith("fixed")}
    best = max(fixed.values())
    return ["adaptive"] + [n for n, rate in fixed.items() if n == "fixed-0" or rate >= (1.0 - FOCUS_MARGIN) * best]


def _contender(rs: list[dict]) -> dict:
    """A contender's blocks: median rates and mean k, and per block its steps, tokens, rounds begun and rates."""
    out = {"mean_k": statistics.median(r["mean_k"] for r in rs), "steps": [r["num_steps"] for r in rs],
           "tokens": [r["tokens"] for r in rs], "rounds": [r["rounds"] for r in rs]}
    for unit, key in (("tokens_per_s", "blocks"), ("tokens_per_cpu_s", "cpu_blocks"), ("tokens_per_tcpu_s", "tcpu_blocks")):
        out[unit] = statistics.median(r[unit] for r in rs)
        out[key] = [round(r[unit], 1) for r in rs]
    out["tcpu_spread"] = round(spread([r["tokens_per_tcpu_s"] for r in rs]), 4)
    return out


def _cell_ratios(runs: dict[str, list[dict]], unit: str, prefix: str, focus: list[str]) -> dict:
    """Adaptive (and adaptive-cold) vs plain and vs the best fixed k in `unit`: the median over blocks of each
    block pair's ratio, with its 95% bootstrap interval (bench/scheduler_stats.paired_ci; adaptive-cold over the
    screening blocks it ran). The best fixed k is the focused fixed contender with the highest median, over the same
    blocks as adaptive's: a screened-out one's few wall-clock runs were once the "best" under load (B = 16, fixed-2
    over 4 runs against plain's 28), and the focus blocks make the choice among near-ties precise."""
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
    """Adaptive vs the best fixed k in thread CPU with the best chosen on the other half of the blocks (split-half,
    unbiased: bench/scheduler_stats.py), among the focused fixed contenders (the others were screened out)."""
    rates = {name: [r["tokens_per_tcpu_s"] for r in runs[name]] for name in focus}
    split = split_half_ratio(rates["adaptive"], {n: v for n, v in rates.items() if n.startswith("fixed")})
    return {"tcpu_ratio_vs_best_fixed_split": round(split[0], 4) if split else None,
            "tcpu_best_fixed_split": split[1] if split else None}


if __name__ == "__main__":
    main()
