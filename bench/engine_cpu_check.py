"""Cross-check of bench/engine.py's headline ratios in thread CPU time instead of wall time.
On a shared machine wall time charges every contender for the time other jobs hold the core;
CPU time does not (other jobs still share caches and memory bandwidth, so it is not immune). Same
workload and contenders as bench/engine.py, 1 thread, interleaved, median of `--repeats`.

    .venv/bin/python -m bench.engine_cpu_check [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time


def _tokens_per_cpu_s(run, *args, **kwargs) -> float:
    start = time.thread_time()
    result = run(*args, **kwargs)
    return result["tokens"] / (time.thread_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torch

    from bench.engine_runs import Workload, run_assisted, run_ours, run_transformers
    from rollspec.models.zoo import ensure_zoo

    torch.set_num_threads(1)
    zoo = ensure_zoo()
    runs: dict[str, list[float]] = {}
    for batch in (16, 1):
        workload = Workload.from_zoo(zoo, batch=batch, temperature=1.0, max_new_tokens=160)
        _ = workload.policy, workload.hf_policy, workload.hf_draft  # loading is not timed
        contenders = {f"ours-plain B={batch}": lambda w=workload: run_ours(w, drafter=None, k=0),
                      f"transformers-generate B={batch}": lambda w=workload: run_transformers(w)}
        if batch == 1:
            contenders |= {f"ours-draft_model k={k} B=1": (lambda k=k: run_ours(workload, drafter="draft_model", k=k))
                           for k in (2, 4)}
            contenders["ours-eagle k=8 B=1"] = lambda: run_ours(workload, drafter="eagle", k=8)
            contenders["transformers-assisted B=1"] = lambda: run_assisted(workload)
        for _ in range(args.repeats):
            for name, run in contenders.items():
                runs.setdefault(name, []).append(_tokens_per_cpu_s(run))
    med = {name: statistics.median(values) for name, values in runs.items()}
    for name, values in runs.items():
        print(f"{name:>32}: {med[name]:7.0f} tokens per CPU-s  runs {[round(v) for v in values]}")
    best_draft = max(med["ours-draft_model k=2 B=1"], med["ours-draft_model k=4 B=1"])
    print(f"ar_vs_transformers_b16 {med['ours-plain B=16'] / med['transformers-generate B=16']:.3f}, "
          f"b1 {med['ours-plain B=1'] / med['transformers-generate B=1']:.3f}; "
          f"sd_vs_assisted_b1 {best_draft / med['transformers-assisted B=1']:.3f}; "
          f"eagle k=8 over plain at B=1 {med['ours-eagle k=8 B=1'] / med['ours-plain B=1']:.3f}")


if __name__ == "__main__":
    main()
