"""The scheduler bench's cells over several processes: how far one process's headline is a draw.

    .venv/bin/python -m bench.scheduler_processes --drafter eagle --batches 1,4 --processes 3 [--drain] [...]

Runs `bench.scheduler` (lockstep, one process per run) `--processes` times one after another with the arguments
given (any other argument, e.g. `--focus-blocks 8`, is passed on to it), and gathers per cell the thread-CPU ratio of the warm adaptive to the best fixed k of every process, with
its interval and the adaptive's mean k. Why: within a process a cell resolves ~1% (A/A), but the warm scheduler
settles where its own first steps led it, and at EAGLE B = 4 five processes read 0.952-0.980 with intervals of
+-1-2% each (BENCHMARKS.md, 2026-11-27): the spread between processes is the larger error. `median` per cell is
the median over processes; `summary.median_min_ratio_vs_best_fixed` the smallest of those medians. Writes
bench/results/scheduler_processes_<drafter>.json (each process's own JSON goes to a scratch directory).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
CELL_KEYS = ("tcpu_ratio_vs_best_fixed", "tcpu_ratio_vs_best_fixed_ci95", "tcpu_best_fixed", "tcpu_ratio_vs_plain")


def _args() -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drafter", default="eagle", choices=["draft_model", "eagle", "mtp", "ngram"])
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--drain", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_known_args()


def gather(results: list[dict]) -> dict:
    """Per cell (setting), each process's thread-CPU headline and the median over processes; the summary's
    smallest median and smallest single reading across cells."""
    cells: dict[str, dict] = {}
    for result in results:
        for row in result["rows"]:
            cell = cells.setdefault(row["setting"], {"processes": []})
            cell["processes"].append({key: row[key] for key in CELL_KEYS}
                                     | {"mean_k": round(row["contenders"]["adaptive"]["mean_k"], 2)})
    for cell in cells.values():
        ratios = [p["tcpu_ratio_vs_best_fixed"] for p in cell["processes"]]
        cell["median"], cell["min"], cell["max"] = round(statistics.median(ratios), 4), min(ratios), max(ratios)
    return {"cells": cells, "summary": {
        "median_min_ratio_vs_best_fixed": min(c["median"] for c in cells.values()),
        "min_ratio_vs_best_fixed": min(c["min"] for c in cells.values()),
        "num_processes": len(results)}}


def main() -> None:
    args, passed_on = _args()
    command = [sys.executable, "-m", "bench.scheduler", "--drafter", args.drafter, "--batches", args.batches,
               "--drain" if args.drain else "--no-drain", *passed_on]
    results = []
    with tempfile.TemporaryDirectory(prefix="sched-procs-") as scratch:
        for i in range(args.processes):
            out = Path(scratch) / f"run{i}.json"
            print(f"process {i + 1}/{args.processes}: {' '.join(command[1:])}", flush=True)
            subprocess.run([*command, "--out", str(out)], check=True)
            results.append(json.loads(out.read_text()))
    gathered = gather(results)
    output = {"command": f"python -m bench.scheduler_processes --drafter {args.drafter} --batches {args.batches} "
                         f"--processes {args.processes}{' --drain' if args.drain else ''} {' '.join(passed_on)}".rstrip(),
              "date": date.today().isoformat(), "machine": results[0]["machine"]} | gathered
    path = args.out or RESULTS / f"scheduler_processes_{args.drafter}.json"
    path.write_text(json.dumps(output, indent=2) + "\n")
    print(json.dumps({name: {k: c[k] for k in ("median", "min", "max")} for name, c in gathered["cells"].items()}
                     | gathered["summary"], indent=2))


if __name__ == "__main__":
    main()
