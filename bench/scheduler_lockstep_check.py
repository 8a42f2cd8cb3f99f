"""Checks of the scheduler benchmark's lockstep measurement (bench/lockstep.py), in one process per drafter.

    .venv/bin/python -m bench.scheduler_lockstep_check [--drafter draft_model] [--cells 1:8,64:1,drain] [--adaptive]

Per cell (B, or `drain`: bench/scheduler.py's draining batch), streams in lockstep: `plain` (fixed k = 0), `plain-2`
(the same again: A/A, the measurement's resolution), with `:k` fixed k (the bias check) and with `--adaptive` the
warm adaptive scheduler. Each is reported against plain as the median of paired block ratios with its 95% interval,
in thread CPU and wall. With `:k` also whole runs of plain and fixed k, one after the other in bench/scheduler.py's
order (`--whole-repeats` each): their median paired ratio and interval, against which the lockstep ratio must agree
if switching streams every step (colder caches) costs the contenders alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drafter", default="draft_model", choices=["draft_model", "eagle"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cells", default="1:8,64:1,drain")
    parser.add_argument("--adaptive", action="store_true")
    parser.add_argument("--block-s", type=float, default=2.0)
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--warmup-s", type=float, default=1.0)
    parser.add_argument("--whole-repeats", type=int, default=12)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args()


def main() -> None:
    args = _args()
    import torch

    from bench.engine import _machine
    from bench.engine_runs import Workload
    from bench.lockstep import run_lockstep, warm_up
    from bench.scheduler import interleave, setting
    from bench.scheduler_runs import adaptive_scheduler, profile_cost_model, run_depth
    from bench.scheduler_stats import paired_ci, spread
    from bench.scheduler_streams import block_runs, fixed_stream, warm_stream
    from rollspec.models.zoo import ensure_zoo

    torch.set_num_threads(args.threads)
    zoo = ensure_zoo()
    cells = []
    for cell in args.cells.split(","):
        batch, _, k = cell.partition(":")
        cells.append((batch, int(k) if k else None))
    rows = []
    for batch, k in cells:
        name, size, num_prompts, round_size = setting(64 if batch == "drain" else int(batch), batch == "drain")
        workload = Workload.from_zoo(zoo, batch=size, temperature=args.temperature, max_new_tokens=160,
                                     num_prompts=num_prompts)
        streams = {c: fixed_stream(c, workload, args.drafter, 0, round_size=round_size) for c in ("plain", "plain-2")}
        if k is not None:
            streams[f"fixed-{k}"] = fixed_stream(f"fixed-{k}", workload, args.drafter, k, round_size=round_size)
        if args.adaptive:
            warm = adaptive_scheduler(workload, profile_cost_model(workload, args.drafter))
            run_depth(workload, args.drafter, scheduler=warm, round_size=round_size)  # untimed warm-up
            streams["adaptive"] = warm_stream("adaptive", workload, args.drafter, warm, round_size=round_size)
        started = time.perf_counter()
        warm_up(list(streams.values()), args.warmup_s)
        run_lockstep(list(streams.values()), until_s=args.blocks * args.block_s, block_s=args.block_s)
        lockstep_s = time.perf_counter() - started
        runs = {c: block_runs(s) for c, s in streams.items()}
        row = {"setting": name, "batch": size, "lockstep_s": round(lockstep_s, 1),
               "rounds": {c: sum(r["rounds"] for r in rs) for c, rs in runs.items()},
               "mean_k": {c: round(statistics.mean(r["mean_k"] for r in rs), 3) for c, rs in runs.items()},
               "block_spread": {c: round(spread([r["tokens_per_tcpu_s"] for r in rs]), 4) for c, rs in runs.items()}}
        for unit, prefix in (("tokens_per_tcpu_s", "tcpu_"), ("tokens_per_s", "")):
            rates = {c: [r[unit] for r in rs] for c, rs in runs.items()}
            row[f"{prefix}lockstep_vs_plain"] = {c: [round(x, 4) for x in paired_ci(v, rates["plain"])]
                                                 for c, v in rates.items() if c != "plain"}
        if k is not None:
            whole: dict[str, list[dict]] = {"fixed-0": [], f"fixed-{k}": []}
            interleave(whole, list(whole), args.whole_repeats,
                       lambda c: run_depth(workload, args.drafter, fixed_k=int(c[6:]), round_size=round_size))
            for unit, prefix in (("tokens_per_tcpu_s", "tcpu_"), ("tokens_per_s", "")):
                row[f"{prefix}whole_runs_vs_plain"] = {f"fixed-{k}": [round(x, 4) for x in paired_ci(
                    [r[unit] for r in whole[f"fixed-{k}"]], [r[unit] for r in whole["fixed-0"]])]}
            row["whole_run_spread"] = round(spread([r["tokens_per_tcpu_s"] for r in whole["fixed-0"]]), 4)
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = {"command": f"python -m bench.scheduler_lockstep_check --drafter {args.drafter} --cells {args.cells} "
                      f"{'--adaptive ' if args.adaptive else ''}--block-s {args.block_s} --blocks {args.blocks} "
                      f"--whole-repeats {args.whole_repeats}", "machine": _machine(args.threads), "rows": rows}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
