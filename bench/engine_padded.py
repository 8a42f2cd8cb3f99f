"""Speculative vs plain decoding with the zoo's policy padded to a larger model's cost per token
(rollspec/models/padding.py: extra layers that compute but add nothing, so the logits and every
drafter's acceptance stay the zoo's). Default: 52 extra layers, 24.1M parameters, DESIGN.md's CPU
reference size. Same workload and engine as bench/engine.py, 1 thread, contenders interleaved,
median of `--repeats`, tokens per wall second and per thread-CPU second.

    .venv/bin/python -m bench.engine_padded [--repeats 3] [--extra-layers 52]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import types
from datetime import date
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "engine_padded.json"
CONTENDERS = {"plain": (None, 0), "eagle k=2": ("eagle", 2), "eagle k=4": ("eagle", 4), "eagle k=8": ("eagle", 8),
              "draft_model k=2": ("draft_model", 2), "draft_model k=4": ("draft_model", 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--extra-layers", type=int, default=52)
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    import torch

    from bench.engine_runs import Workload, run_ours
    from rollspec.engine.loader import load_model
    from rollspec.models.padding import pad_policy
    from rollspec.models.zoo import ensure_zoo

    torch.set_num_threads(1)
    zoo = ensure_zoo()
    padded_dir = Path(zoo.policy).parent.parent / "padded" / f"policy-plus{args.extra_layers}"
    if not (padded_dir / "model.safetensors").exists():
        pad_policy(zoo.policy, padded_dir, extra_layers=args.extra_layers)
    _check_same_logits(load_model(zoo.policy).model, load_model(padded_dir).model, torch)
    padded = types.SimpleNamespace(policy=str(padded_dir), draft=zoo.draft, eagle=zoo.eagle)
    load_start = os.getloadavg()[0]
    rows = []
    for batch in [int(b) for b in args.batches.split(",")]:
        workload = Workload.from_zoo(padded, batch=batch, temperature=1.0, max_new_tokens=160)
        _ = workload.policy
        runs: dict[str, list[tuple[float, float, float | None]]] = {}
        for _ in range(args.repeats):
            for name, (drafter, k) in CONTENDERS.items():
                start = time.thread_time()
                out = run_ours(workload, drafter=drafter, k=k)
                runs.setdefault(name, []).append((out["tokens_per_s"], out["tokens"] / (time.thread_time() - start),
                                                  out["acceptance_length"]))
        for name, values in runs.items():
            rows.append({"contender": name, "batch": batch,
                         "tokens_per_s": statistics.median(v[0] for v in values),
                         "tokens_per_cpu_s": statistics.median(v[1] for v in values),
                         "tokens_per_cpu_s_runs": [round(v[1], 1) for v in values],
                         "acceptance_length": values[0][2]})
        print(_line(rows, batch), flush=True)
    params = sum(p.numel() for p in load_model(padded_dir).model.parameters())
    result = {"command": f"python -m bench.engine_padded --repeats={args.repeats} --extra-layers={args.extra_layers}",
              "date": str(date.today()), "load_1min": [round(load_start, 2), round(os.getloadavg()[0], 2)],
              "policy": {"dir": str(padded_dir), "num_params": params}, "rows": rows, "summary": _summary(rows)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))


def _check_same_logits(original, padded, torch) -> None:
    ids = torch.randint(3, 60, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        if not torch.equal(original.logits(original(ids)), padded.logits(padded(ids))):
            raise SystemExit("the padded policy's logits differ from the zoo policy's: not the same function")


def _summary(rows: list[dict]) -> dict:
    summary = {}
    for batch in sorted({r["batch"] for r in rows}):
        cell = {r["contender"]: r for r in rows if r["batch"] == batch}
        plain = cell.pop("plain")
        best_cpu = max(cell.values(), key=lambda r: r["tokens_per_cpu_s"])
        best_wall = max(cell.values(), key=lambda r: r["tokens_per_s"])
        summary[f"sd_speedup_b{batch}_cpu"] = round(best_cpu["tokens_per_cpu_s"] / plain["tokens_per_cpu_s"], 3)
        summary[f"best_sd_b{batch}_cpu"] = best_cpu["contender"]
        summary[f"sd_speedup_b{batch}_wall"] = round(best_wall["tokens_per_s"] / plain["tokens_per_s"], 3)
        summary[f"best_sd_b{batch}_wall"] = best_wall["contender"]
    return summary


def _line(rows: list[dict], batch: int) -> str:
    cell = {r["contender"]: r for r in rows if r["batch"] == batch}
    plain = cell["plain"]["tokens_per_cpu_s"]
    return f"B={batch}: plain {plain:.0f} tok/cpu-s; " + ", ".join(
        f"{name} {r['tokens_per_cpu_s'] / plain:.2f}x (acc {r['acceptance_length']:.2f})"
        for name, r in cell.items() if name != "plain")


if __name__ == "__main__":
    main()
