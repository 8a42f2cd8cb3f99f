"""Engine benchmark on the trained zoo: plain vs speculative decoding per drafter, k and batch;
our plain decoding vs transformers `generate`; our speculative decoding vs transformers
assisted generation. Every number that matters is a ratio of runs interleaved in one process.

    .venv/bin/python -m bench.engine [--threads 2] [--repeats 3] [--quick] [--batches 1 4] [--ks 4 8] [--out F]

Writes bench/results/engine.json and prints the BENCHMARKS.md rows.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import date
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "engine.json"
DRAFTERS = ("draft_model", "eagle", "mtp", "ngram")


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads for every contender")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions; the median is reported")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (RL rollouts use 1)")
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--quick", action="store_true", help="a reduced grid for a smoke run")
    parser.add_argument("--batches", type=int, nargs="+", help="batch sizes to run (default: the full grid)")
    parser.add_argument("--ks", type=int, nargs="+", help="draft depths to run (default: the full grid)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


def main() -> None:
    args = _args()
    import torch

    from bench.engine_runs import Workload, run_assisted, run_ours, run_transformers
    from rollspec.models.zoo import ensure_zoo

    torch.set_num_threads(args.threads)
    zoo = ensure_zoo()
    batches = args.batches or ((1, 4) if args.quick else (1, 4, 16, 64))
    ks = args.ks or ((2, 4) if args.quick else (1, 2, 4, 8))
    rows: list[dict] = []

    def record(**row) -> None:
        rows.append(row)
        acc = f" acc_len {row['acceptance_length']:.2f}" if row.get("acceptance_length") else ""
        print(f"{row['contender']:>24} B={row['batch']:<3} k={row.get('k', 0)} {row['tokens_per_s']:8.1f} tok/s{acc}",
              flush=True)

    for batch in batches:
        workload = Workload.from_zoo(zoo, batch=batch, temperature=args.temperature,
                                     max_new_tokens=args.max_new_tokens)
        configs = [("plain", None, 0)] + [(d, d, k) for d in DRAFTERS for k in ks]
        samples: dict[tuple, list[dict]] = {c: [] for c in configs}
        hf_samples: list[dict] = []
        assisted: list[dict] = []
        for _ in range(args.repeats):  # round-robin so drift on a shared machine hits every contender alike
            for config in configs:
                samples[config].append(run_ours(workload, drafter=config[1], k=config[2]))
            if batch in (1, 4, 16):
                hf_samples.append(run_transformers(workload))
            if batch == 1:
                assisted.append(run_assisted(workload))
        for (name, _, k), runs in samples.items():
            record(contender=f"ours-{name}", batch=batch, k=k, **_median(runs))
        if hf_samples:
            record(contender="transformers-generate", batch=batch, **_median(hf_samples))
        if assisted:
            record(contender="transformers-assisted", batch=batch, k=0, **_median(assisted))
    result = {"command": "python -m bench.engine " + " ".join(f"--{k.replace('_', '-')}={v}" for k, v in
                                                              vars(args).items() if k != "out"),
              "date": date.today().isoformat(), "machine": _machine(args.threads), "models": _models(zoo),
              "rows": rows, "summary": _summary(rows)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2))


def _median(runs: list[dict]) -> dict:
    out = {"tokens_per_s": statistics.median(r["tokens_per_s"] for r in runs),
           "tokens_per_s_runs": [round(r["tokens_per_s"], 1) for r in runs]}
    if runs[0].get("acceptance_length") is not None:
        out["acceptance_length"] = statistics.median(r["acceptance_length"] for r in runs)
    return out


def _best(rows: list[dict], batch: int, prefix: str = "ours-") -> dict:
    candidates = [r for r in rows if r["batch"] == batch and r["contender"].startswith(prefix)
                  and r["contender"] != "ours-plain"]
    return max(candidates, key=lambda r: r["tokens_per_s"])


def _find(rows: list[dict], contender: str, batch: int) -> dict | None:
    return next((r for r in rows if r["contender"] == contender and r["batch"] == batch), None)


def _summary(rows: list[dict]) -> dict:
    summary: dict = {}
    for batch in sorted({r["batch"] for r in rows}):
        plain = _find(rows, "ours-plain", batch)
        best = _best(rows, batch)
        summary[f"sd_speedup_b{batch}"] = round(best["tokens_per_s"] / plain["tokens_per_s"], 3)
        summary[f"best_sd_b{batch}"] = f"{best['contender']} k={best['k']}"
    best_acc = max((r for r in rows if r.get("acceptance_length") and r["contender"].startswith("ours-")),
                   key=lambda r: r["acceptance_length"] if r.get("k") == 4 else 0)
    summary["acceptance_length"] = round(best_acc["acceptance_length"], 3)
    summary["acceptance_length_drafter"] = f"{best_acc['contender']} k=4 B={best_acc['batch']}"
    hf16, plain16 = _find(rows, "transformers-generate", 16), _find(rows, "ours-plain", 16)
    if hf16 and plain16:
        summary["ar_vs_transformers_b16"] = round(plain16["tokens_per_s"] / hf16["tokens_per_s"], 3)
    assisted = _find(rows, "transformers-assisted", 1)
    if assisted:
        ours = _find(rows, "ours-draft_model", 1) and max(
            (r for r in rows if r["batch"] == 1 and r["contender"] == "ours-draft_model"),
            key=lambda r: r["tokens_per_s"])
        summary["sd_vs_assisted_b1"] = round(ours["tokens_per_s"] / assisted["tokens_per_s"], 3)
    return summary


def _machine(threads: int) -> dict:
    import os

    import torch

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "gpu": None,
            "torch": torch.__version__, "threads": threads, "python": platform.python_version(),
            "note": "shared 2-core CPU; absolute tokens/s are not comparable across machines, ratios are"}


def _models(zoo) -> dict:
    manifest = json.loads(Path(zoo.manifest).read_text())
    return {"zoo": str(zoo.root), "sizes": manifest.get("sizes", manifest.get("models", {}))}


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"done in {time.perf_counter() - start:.0f} s")
