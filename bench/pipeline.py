"""Pipeline benchmark on the tiny setup: step time and rollout share of the step for synchronous and
asynchronous GRPO, each with plain decoding and with speculative decoding, run one after the other
in one Ray session on the same prompts and seeds.

    .venv/bin/python -m bench.pipeline [--steps 8] [--warmup 2] [key=value ...]

Extra key=value overrides apply to every run (e.g. models.policy=/path for non-zoo models).
Writes bench/results/pipeline.json and prints the BENCHMARKS.md row.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "pipeline.json"
MODES = {
    "sync_plain": ["algorithm.max_staleness=0", "rollout.drafter=none"],
    "sync_speculative": ["algorithm.max_staleness=0"],
    "async_plain": ["algorithm.max_staleness=1", "rollout.drafter=none"],
    "async_speculative": ["algorithm.max_staleness=1"],
}
MEANS = ("step_s", "generate_s", "reward_s", "learner_wait_s", "train_s", "publish_s", "weight_sync_s",
         "acceptance_length", "rollout_tokens_per_s", "reward_mean", "response_tokens_mean")


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "tiny.yaml"))
    parser.add_argument("--steps", type=int, default=8, help="learner steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the means")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("overrides", nargs="*", help="config overrides applied to every run")
    return parser.parse_args()


def measure(metrics: list[dict], warmup: int, sync: bool) -> dict:
    """Means over the measured steps. Rollout time: in sync mode the generation phase (dispatch to last
    generation, plus the scoring tail); in async mode the time the learner waited for a full batch,
    i.e. the rollout time the pipeline did not hide."""
    measured = metrics[warmup:]
    out = {key: statistics.fmean(m[key] for m in measured) for key in MEANS}
    out["rollout_s"] = out["generate_s"] + out["reward_s"] if sync else out["learner_wait_s"]
    out["rollout_share"] = out["rollout_s"] / out["step_s"]
    out["steps_measured"] = len(measured)
    out["staleness_max"] = max(m["staleness_max"] for m in metrics)
    return out


def main() -> None:
    args = _args()
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray

    from rollspec.launch.config import load_config
    from rollspec.launch.run_dir import RunDir
    from rollspec.launch.train import train

    load_start = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="rs-bench-pipeline-"))
    base = [f"algorithm.steps={args.steps}", "checkpoint.enabled=false", "run.progress=false", f"run.root={root}",
            *args.overrides]
    ray.init(num_cpus=8, include_dashboard=False, _temp_dir=f"/tmp/rs-bench-{os.getpid()}", log_to_driver=False)
    runs, configs = {}, {}
    try:
        for mode, overrides in MODES.items():
            config = load_config(args.config, [*base, f"run.name={mode}", *overrides])
            start = time.monotonic()
            summary = train(config)
            metrics = RunDir(Path(summary["run_dir"])).metrics()
            runs[mode] = {**measure(metrics, args.warmup, mode.startswith("sync")),
                          "wall_s": time.monotonic() - start, "startup_s": summary["startup_s"],
                          "ledger_problems": len(summary["ledger_problems"])}
            configs[mode] = {"drafter": config.rollout.drafter, "depth": config.rollout.depth, "k": config.rollout.k,
                             "max_staleness": config.algorithm.max_staleness}
            print(f"{mode:>18}: step {runs[mode]['step_s']:.2f}s, rollout share {runs[mode]['rollout_share']:.2f}, "
                  f"acc_len {runs[mode]['acceptance_length']:.2f}, {runs[mode]['rollout_tokens_per_s']:.0f} tok/s",
                  flush=True)
    finally:
        ray.shutdown()
    plain = runs["sync_plain"]["step_s"]
    summary = {"rollout_share_sync_plain": runs["sync_plain"]["rollout_share"],
               "speedup_sync_sd": plain / runs["sync_speculative"]["step_s"],
               "speedup_async_sd": plain / runs["async_speculative"]["step_s"],
               "speedup_async_plain": plain / runs["async_plain"]["step_s"],
               "rollout_speedup_sync_sd": runs["sync_plain"]["rollout_s"] / runs["sync_speculative"]["rollout_s"]}
    base_config = load_config(args.config, base)
    result = {
        "benchmark": "pipeline", "date": date.today().isoformat(),
        "command": "python -m bench.pipeline " + " ".join([f"--steps {args.steps}", f"--warmup {args.warmup}",
                                                           *args.overrides]),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "gpu": None,
                    "python": platform.python_version(), "load_avg_1m_start": load_start,
                    "load_avg_1m_end": os.getloadavg()[0]},
        "setup": {"config": str(Path(args.config).relative_to(REPO)) if Path(args.config).is_relative_to(REPO)
                  else args.config, "policy": base_config.models.policy, "draft": base_config.models.draft,
                  "prompts_per_step": base_config.algorithm.prompts_per_step,
                  "group_size": base_config.algorithm.group_size,
                  "max_new_tokens": base_config.algorithm.max_new_tokens, "steps": args.steps, "warmup": args.warmup,
                  "modes": configs},
        "runs": runs, "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"| {result['date']} | 2-core CPU, no GPU | {runs['sync_plain']['step_s']:.2f} | "
          f"{runs['sync_speculative']['step_s']:.2f} | {runs['async_plain']['step_s']:.2f} | "
          f"{runs['async_speculative']['step_s']:.2f} | {summary['rollout_share_sync_plain']:.2f} | "
          f"{summary['speedup_sync_sd']:.2f} | {summary['speedup_async_sd']:.2f} |")


if __name__ == "__main__":
    main()
