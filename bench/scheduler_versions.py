"""The scheduler package at another git revision, importable beside this tree's, for same-process A/B runs.

    .venv/bin/python -m bench.scheduler_versions --base <rev> [--drafter eagle] [--batches 1,4,64] [--blocks 12]

`load_scheduler(rev)` exports rollspec/scheduler/ at `rev` into a temporary package (`rollspec_<rev>.scheduler`, its
own imports renamed to it: the package imports only stdlib, numpy and itself) and imports it. main() runs two warm
adaptive schedulers in lockstep (bench/lockstep.py, bench/scheduler_streams.warm_stream), `base` at `rev` and
`branch` from this tree, each on its own copy of one start-up profile, and prints the branch's paired ratio to base
per thread-CPU block (bench/scheduler_stats.paired_ci) and each one's steps by k.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import importlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


@functools.cache
def load_scheduler(rev: str, repo: Path = Path(__file__).resolve().parents[1]):
    """rollspec.scheduler as of git revision `rev` of `repo`, imported as a separate package."""
    name = f"rollspec_{rev[:12]}"
    root = Path(tempfile.mkdtemp(prefix="scheduler_versions_"))
    atexit.register(shutil.rmtree, root, True)  # the export lives as long as the process that imported it
    package = root / name / "scheduler"
    package.mkdir(parents=True)
    (root / name / "__init__.py").write_text("")
    files = subprocess.run(["git", "-C", str(repo), "ls-tree", "--name-only", f"{rev}:rollspec/scheduler"],
                           check=True, capture_output=True, text=True).stdout.split()
    for file in (f for f in files if f.endswith(".py")):
        text = subprocess.run(["git", "-C", str(repo), "show", f"{rev}:rollspec/scheduler/{file}"], check=True,
                              capture_output=True, text=True).stdout
        (package / file).write_text(text.replace("rollspec.scheduler", f"{name}.scheduler"))
    sys.path.insert(0, str(root))
    return importlib.import_module(f"{name}.scheduler")


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True)
    parser.add_argument("--drafter", default="eagle", choices=["draft_model", "eagle"])
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--block-s", type=float, default=2.0)
    parser.add_argument("--blocks", type=int, default=12)
    parser.add_argument("--warmup-s", type=float, default=2.0)
    return parser.parse_args()


def main() -> None:
    args = _args()
    import torch

    from bench.engine_runs import Workload
    from bench.lockstep import run_lockstep, warm_up
    from bench.scheduler import setting
    from bench.scheduler_runs import adaptive_scheduler, run_depth, step_profile
    from bench.scheduler_stats import paired_ci
    from bench.scheduler_streams import block_runs, warm_stream
    from rollspec import scheduler as branch
    from rollspec.models.zoo import ensure_zoo

    base = load_scheduler(args.base)
    torch.set_num_threads(1)
    zoo = ensure_zoo()
    for batch in map(int, args.batches.split(",")):
        name, size, num_prompts, round_size = setting(batch, False)
        workload = Workload.from_zoo(zoo, batch=size, temperature=1.0, max_new_tokens=160, num_prompts=num_prompts)
        profile = step_profile(workload, args.drafter)
        streams = {}
        for label, package in (("base", base), ("branch", branch)):
            scheduler = adaptive_scheduler(workload, package.profiled_costs(profile), package)
            run_depth(workload, args.drafter, scheduler=scheduler, round_size=round_size)  # untimed warm-up
            streams[label] = warm_stream(label, workload, args.drafter, scheduler, round_size=round_size)
        warm_up(list(streams.values()), args.warmup_s)
        run_lockstep(list(streams.values()), until_s=args.blocks * args.block_s, block_s=args.block_s)
        runs = {label: block_runs(stream) for label, stream in streams.items()}
        rates = {label: [r["tokens_per_tcpu_s"] for r in rs] for label, rs in runs.items()}
        ratio, low, high = paired_ci(rates["branch"], rates["base"])
        mean_k = {label: round(sum(r["mean_k"] for r in rs) / len(rs), 3) for label, rs in runs.items()}
        starts = {label: round(sum(r.get("num_measured_starts", 0) for r in rs) / len(rs), 1)
                  for label, rs in runs.items()}
        plain = {label: round(sum(r.get("num_plain", 0) - r.get("num_checks", 0) for r in rs)
                              / max(1, sum(r["num_steps"] for r in rs)), 4) for label, rs in runs.items()}
        print(f"{args.drafter} {name}: branch / base {ratio:.4f} [{low:.4f}, {high:.4f}] over {len(rates['base'])} "
              f"blocks of {args.block_s} s tcpu; mean k {mean_k}; measured starts a block {starts}; plain steps "
              f"not checks {plain}", flush=True)


if __name__ == "__main__":
    main()
