"""The simulator against the real actor pipeline: build its input from bench/pipeline.py's runs, then calibrate.

    .venv/bin/python -m bench.sim_pipeline [--runs /tmp/rs-bench-pipeline-XXXX] [--lengths-only]

1. Reads the four runs of the last `python -m bench.pipeline` (sync/async x plain/speculative on
   configs/tiny.yaml; run dirs under the temp root it created, newest by default): per run the
   means of the measured steps (bench/results/pipeline.json's warm-up), engine seconds per step
   (rollout tokens / the actor's engine tokens per second), acceptance per draft position summed
   over the measured steps, the rollout actor's weight-swap seconds, and the rollout actor's
   start-up cost profile (summary.json "cost_profiles", per-cell median over the speculative runs).
2. Measures, separately from the runs, the response lengths of the starting policy on the runs'
   own prompts and seeds (the built-in engine in this process, plain decoding, one thread).
3. Writes rollspec/sim/scenarios/tiny-pipeline-measured.json (schema rollspec.sim.actor-runs/v1)
   and prints `calibrate_actor_runs` on it: fitted on the sync runs, async held out.
"""

import argparse
import json
import math
import statistics
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "rollspec" / "sim" / "scenarios" / "tiny-pipeline-measured.json"
# The committed inputs bench/sim.py calibrates on: the tiny preset as is, and the same without draft refresh.
RUN_SETS = {"tiny": OUT, "tiny_no_refresh": OUT.with_name("tiny-pipeline-measured-no-refresh.json")}
PIPELINE = REPO / "bench" / "results" / "pipeline.json"
MODES = {"sync_plain": ("plain", 0), "sync_speculative": ("adaptive", 0), "async_plain": ("plain", 1),
         "async_speculative": ("adaptive", 1)}


def _newest_root() -> Path:
    roots = [p for p in Path("/tmp").glob("rs-bench-pipeline-*") if all((p / m / "summary.json").exists() for m in MODES)]
    if not roots:
        raise SystemExit("no finished bench/pipeline.py run under /tmp/rs-bench-pipeline-*; pass --runs")
    return max(roots, key=lambda p: (p / "async_speculative" / "summary.json").stat().st_mtime)


def _run(run_dir: Path, warmup: int, speculation: str, staleness: int, k_max: int) -> dict:
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    measured = metrics[warmup:]
    for m in measured:
        m["engine_s"] = m["rollout_tokens"] / m["rollout_tokens_per_s"] if m["rollout_tokens_per_s"] > 0 else 0.0
    keys = ("step_s", "generate_s", "reward_s", "learner_wait_s", "train_s", "publish_s", "weight_sync_s", "engine_s")
    means = {key: statistics.fmean(m[key] for m in measured) for key in keys}
    accepted, drafted = [0] * k_max, [0] * k_max
    for m in measured:
        for j, n in enumerate(m.get("step_accepted_per_position", [])[:k_max]):
            accepted[j] += n
        for j, n in enumerate(m.get("step_drafted_per_position", [])[:k_max]):
            drafted[j] += n
    reach = [a / d if d else 0.0 for a, d in zip(accepted, drafted)]  # P(position j accepted | drafted)
    acceptance = [reach[0]] + [reach[j] / reach[j - 1] if reach[j - 1] else 0.0 for j in range(1, k_max)]
    summary = json.loads((run_dir / "summary.json").read_text())
    rollout = summary["rollouts"][0]
    return {"name": run_dir.name, "speculation": speculation, "max_staleness": staleness,
            "acceptance": acceptance if speculation != "plain" else [],
            "swap_s": rollout["swap_s"] / max(1, rollout["num_policy_swaps"]), "means": means,
            "num_steps_measured": len(measured),
            "acceptance_length_mean": statistics.fmean(m["acceptance_length"] for m in measured),
            "response_tokens_mean": statistics.fmean(m["response_tokens_mean"] for m in measured),
            "profiles": summary.get("cost_profiles", [])}


def _profile(runs: list[dict]) -> dict:
    """Per-cell median of every start-up profile the runs recorded (seconds)."""
    profiles = [p for run in runs for p in run["profiles"] if p.get("target_ms")]
    if not profiles:
        raise SystemExit("no rollout start-up cost profile in the runs' summaries (adaptive depth records one)")
    target, draft = {}, {}
    for cell in profiles[0]["target_ms"]:
        b, q = cell[1:].split("_q")
        target[(int(b), int(q))] = 1e-3 * statistics.median(p["target_ms"][cell] for p in profiles)
    for cell in profiles[0]["draft_ms"]:
        draft[int(cell[1:])] = 1e-3 * statistics.median(p["draft_ms"][cell] for p in profiles)
    return {"target_s": [[b, q, s] for (b, q), s in sorted(target.items())],
            "draft_s": [[b, s] for b, s in sorted(draft.items())], "num_profiles": len(profiles)}


def _lengths(config_path: Path, num_prompts: int) -> tuple[list[int], float]:
    """Response lengths (and mean prompt tokens) of the starting policy on the run's first num_prompts groups."""
    import tempfile

    import torch
    import yaml

    from rollspec.actors.prompt_source import PromptSource
    from rollspec.engine.config import EngineConfig
    from rollspec.engine.engine import Engine
    from rollspec.engine.loader import load_model
    from rollspec.engine.sampling_params import SamplingParams
    from rollspec.engine.sequence import Request
    from rollspec.launch.config import load_config
    from rollspec.launch.model_paths import resolve_model_paths
    from rollspec.launch.specs import build_specs

    torch.set_num_threads(1)
    data = yaml.safe_load(config_path.read_text())
    data.pop("resolved", None)  # the run dir's record of the model directories, not a config key
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump(data, f)
        f.flush()
        config = load_config(f.name, [])
    specs = build_specs(config, resolve_model_paths(config))
    c, rollout = specs.controller, specs.rollout
    source = PromptSource(c.prompt_mixture(), group_size=c.group_size, seed=c.sample_seed,
                          dataset_size=c.dataset_size)
    s = rollout.sampling
    requests, prompt_tokens = [], []
    for i in range(num_prompts):
        group = source.group(i, policy_version=0)
        prompt_tokens.append(len(group.token_ids))
        requests += [Request(request_id=f"{i}/{j}", prompt_ids=tuple(group.token_ids),
                             params=SamplingParams(temperature=s.temperature, top_p=s.top_p,
                                                   max_new_tokens=s.max_new_tokens, stop_token_ids=s.stop_token_ids,
                                                   seed=group.seed + j))
                     for j in range(group.group_size)]
    policy = load_model(rollout.policy_path)
    engine = Engine(policy.model, EngineConfig(max_batch_size=64, max_seq_len=rollout.engine.max_seq_len, k_max=0))
    with torch.no_grad():
        completions = engine.generate(requests)
    return [max(1, len(c.token_ids)) for c in completions], statistics.fmean(prompt_tokens)


def actor_calibrations() -> dict:
    """Every committed run set calibrated on its own sync runs (these count towards the max error), plus two
    stricter checks that do not: the async runs with the sync runs' learner and reward timers, and each
    set's fit predicting the other set's four runs."""
    from rollspec.sim.actor_calibration import calibrate_actor_runs

    def rows(report):
        return {row.name: round(row.error, 4) for row in (*report.fit, *report.heldout)}

    own = {name: calibrate_actor_runs(path) for name, path in RUN_SETS.items()}
    out = {"max_error": max(r.max_error for r in own.values()),
           "heldout_max_error": max(r.heldout_max_error for r in own.values()),
           "sets": {name: {"measured": str(RUN_SETS[name].relative_to(REPO)), **r.as_dict()} for name, r in own.items()},
           "strict_async_with_sync_timers": {name: rows(calibrate_actor_runs(path, timers_from_sync=True))
                                             for name, path in RUN_SETS.items()},
           "cross_set": {}}
    for name, report in own.items():
        for other, path in RUN_SETS.items():
            if other != name:
                cross = calibrate_actor_runs(path, fitted=(report.engine_scale, report.overhead_s))
                out["cross_set"][f"{name}_fit_predicts_{other}"] = {"max_error": cross.max_error, **rows(cross)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=None, help="bench/pipeline.py's temp root (newest by default)")
    parser.add_argument("--pipeline", type=Path, default=PIPELINE, help="that run's bench/results/pipeline.json")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    from rollspec.sim.actor_calibration import calibrate_actor_runs

    root = args.runs or _newest_root()
    pipeline = json.loads(args.pipeline.read_text())
    warmup, k_max = pipeline["setup"]["warmup"], pipeline["setup"]["modes"]["sync_speculative"]["k"]
    runs = [_run(root / mode, warmup, speculation, staleness, k_max) for mode, (speculation, staleness) in MODES.items()]
    for run in runs:  # the same steps as the benchmark's own means
        reported = pipeline["runs"][run["name"]]["step_s"]
        if not math.isclose(run["means"]["step_s"], reported, rel_tol=1e-6):
            raise SystemExit(f"{root / run['name']}: mean step {run['means']['step_s']:.3f} s is not pipeline.json's "
                             f"{reported:.3f} s; pass the --runs root of that benchmark run")
    cost = _profile(runs)
    setup = pipeline["setup"]
    lengths, prompt_tokens = _lengths(root / "sync_plain" / "config.yaml", setup["steps"] * setup["prompts_per_step"])
    doc = {
        "schema": "rollspec.sim.actor-runs/v1",
        "machine": f"{pipeline['machine']['cores']}-core CPU shared with other engineers' jobs, no GPU "
                   f"(load {pipeline['machine']['load_avg_1m_start']:.1f} -> {pipeline['machine']['load_avg_1m_end']:.1f})",
        "model": f"{setup['policy']} / draft {setup['draft']}, configs/tiny.yaml actors (Ray, ZeroMQ, DeepSpeed)",
        "note": f"from {pipeline['command']} on {pipeline['date']} (run dirs {root}); response lengths measured "
                "separately: the starting policy on the runs' own prompts and seeds, in-process plain decoding",
        "prompt_tokens": round(prompt_tokens), "max_num_seqs": 64, "k_max": k_max,
        "prompts_per_step": setup["prompts_per_step"], "group_size": setup["group_size"],
        "cost": {"target_s": cost["target_s"], "draft_s": cost["draft_s"]},
        "num_startup_profiles": cost["num_profiles"],
        "response_lengths": lengths,
        "runs": [{key: value for key, value in run.items() if key != "profiles"} for run in runs],
    }
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    run_means = ", ".join(f"{r['response_tokens_mean']:.1f}" for r in runs)
    print(f"response lengths: mean {statistics.fmean(lengths):.1f} (runs: {run_means}), max {max(lengths)}; "
          f"prompt tokens {prompt_tokens:.1f}")
    report = calibrate_actor_runs(doc)
    print(f"fitted on the sync runs: engine_scale {report.engine_scale:.3f}, overhead {report.overhead_s:.3f} s/step")
    for row in report.engine:
        print(f"engine s/step {row.name:18s} measured {row.measured_s:6.3f}  profile predicts {row.predicted_s:6.3f}")
    for label, rows in (("fit", report.fit), ("held out", report.heldout)):
        for row in rows:
            print(f"{label:8s} {row.name:18s} measured {row.measured_s:6.3f} s  predicted {row.predicted_s:6.3f} s  "
                  f"error {100 * row.error:5.1f}%")
    print(f"max error {100 * report.max_error:.1f}% (held out {100 * report.heldout_max_error:.1f}%) -> {args.out}")
    strict = calibrate_actor_runs(doc, timers_from_sync=True)
    for row in strict.heldout:
        print(f"async with the sync runs' learner/reward timers: {row.name:18s} measured {row.measured_s:6.3f} s  "
              f"predicted {row.predicted_s:6.3f} s  error {100 * row.error:5.1f}%")


if __name__ == "__main__":
    main()
