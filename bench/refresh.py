"""Draft-refresh benchmark: acceptance length per GRPO step with the draft refreshed by the draft-refresh
actor vs the same draft frozen, over a run long enough for the policy to drift; rollout tokens/s of both.

    .venv/bin/python -m bench.refresh [--drafter draft_model|eagle|mtp] [--lr 1e-3] [--every 2]
                                      [--steps 60] [--window 10] [--out PATH] [key=value ...]

Two `rollspec train` runs, one after the other in one Ray session, with the same seeds and prompts:
`draft_refresh.enabled=true` and `=false`. Speculation depth is fixed (k=4) in both so acceptance
length is comparable from step to step (the adaptive scheduler would change k as acceptance moves).
The drift scenario: GRPO at learning rate `--lr` (tiny.yaml: 1e-4; at 3e-4 the policy moved 0.065
nats/token in 60 steps and the frozen draft did not decay) on the config's prompts, so the policy
moves measurably within a short CPU run, 16 prompt groups per step; `--every` is the refresh cadence
(draft_refresh.every_policy_versions: every version kept the refresh actor busy all the time and
halved rollout tokens/s on 2 cores); `--drafter` picks the zoo drafter (draft model, EAGLE head, or
the policy's MTP heads); extra key=value overrides apply to both runs. Each run's resolved config is
stored with its results. The policy drift is measured as the per-token KL(final || step-0 policy) on
samples of the final policy for held-out (eval split) prompts, and for the prompts the run trained
on, with the final policy read from each run's last learner checkpoint.

Writes bench/results/refresh.json + .png (draft model; refresh_eagle.* / refresh_mtp.* for the other
drafters unless --out says otherwise) and prints the BENCHMARKS.md row.
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
RESULTS = REPO / "bench" / "results" / "refresh.json"
DRIFT = ["algorithm.prompts_per_step=16"]
COMMON = ["rollout.depth=fixed", "rollout.k=4"]
DRAFTERS = {"draft_model": ["models.draft=zoo:draft"], "eagle": ["models.draft=zoo:eagle"], "mtp": []}
RUNS = {"refreshed": ["draft_refresh.enabled=true"], "frozen": ["draft_refresh.enabled=false"]}
PER_STEP = ("acceptance_length", "rollout_tokens_per_s", "draft_version", "policy_version", "reward_mean",
            "response_tokens_mean", "step_s", "draft_refresh_s")
NUM_KL_PROMPTS = 256


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "tiny.yaml"))
    parser.add_argument("--steps", type=int, default=60, help="learner steps per run")
    parser.add_argument("--window", type=int, default=10, help="steps averaged for 'initial' and 'final'")
    parser.add_argument("--drafter", choices=sorted(DRAFTERS), default="draft_model")
    parser.add_argument("--lr", type=float, default=1e-3, help="learner learning rate (the drift scenario)")
    parser.add_argument("--every", type=int, default=2, help="refresh every this many policy versions")
    parser.add_argument("--out", type=Path, default=None,
                        help="result JSON (default refresh.json, or refresh_<drafter>.json for other drafters)")
    parser.add_argument("overrides", nargs="*", help="config overrides applied to both runs (after DRIFT)")
    args = parser.parse_args()
    if args.out is None:
        args.out = RESULTS if args.drafter == "draft_model" else RESULTS.with_name(f"refresh_{args.drafter}.json")
    return args


def scenario(args: argparse.Namespace) -> list[str]:
    """The overrides both runs share: fixed depth, the drafter, the drift scenario, the cadence, the user's."""
    return [*COMMON, f"rollout.drafter={args.drafter}", *DRAFTERS[args.drafter], f"learner.lr={args.lr:g}", *DRIFT,
            f"draft_refresh.every_policy_versions={args.every}", *args.overrides]


def final_policy(run_dir: Path, steps: int, policy_dir: Path):
    """The policy after the run: the Decoder from the last learner checkpoint (DeepSpeed module states)."""
    import torch

    from rollspec.actors.checkpoints import LEARNER_TAG, CheckpointStore
    from rollspec.actors.learner_weights import WRAPPER_PREFIX
    from rollspec.engine.loader import load_model
    from rollspec.engine.weights import load_native

    model = load_model(policy_dir).model
    path = CheckpointStore(run_dir / "checkpoints", keep_last=1).learner_dir(steps) / LEARNER_TAG
    module = torch.load(path / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)["module"]
    load_native(model, {name.removeprefix(WRAPPER_PREFIX): t.float() for name, t in module.items()})
    return model


def policy_kl(initial, final, config, *, on_training_prompts: bool = False) -> float:
    """Mean per response token KL(final || initial) on final-policy samples for held-out prompts (or for
    the prompts the run trained on: the first NUM_KL_PROMPTS of its prompt split, or its dataset)."""

    from rollspec.models.evaluate import generate
    from rollspec.models.teacher import teach
    from rollspec.models.token_batch import TokenSequence, collate
    from rollspec.rl.mixture import TaskMixture
    from rollspec.rl.split import Split
    from rollspec.rl.template import encode_prompt

    data = config.data
    split = Split(data.prompt_split) if on_training_prompts else Split.EVAL
    mixture = TaskMixture(data.tasks, data.seed, split=split, difficulty=data.difficulty,
                          eval_fraction=data.eval_fraction, rl_fraction=data.rl_fraction)
    num_prompts = min(NUM_KL_PROMPTS, data.dataset_size) if on_training_prompts and data.dataset_size else NUM_KL_PROMPTS
    prompts = [encode_prompt(mixture[i].prompt) for i in range(num_prompts)]
    completions = generate(final, prompts, temperature=1.0, seed=config.run.seed + 1,
                           max_new_tokens=config.algorithm.max_new_tokens)
    sequences = [TokenSequence(tuple(p) + c.token_ids, len(p)) for p, c in zip(prompts, completions) if c.token_ids]
    total, count = 0.0, 0
    for start in range(0, len(sequences), 32):
        batch = collate(sequences[start:start + 32])
        p_final, p_initial = teach(final, batch), teach(initial, batch)
        mask = batch.trained_BT
        kl_N = (p_final.logprobs_BTV.exp() * (p_final.logprobs_BTV - p_initial.logprobs_BTV)).sum(-1)[mask]
        total, count = total + float(kl_N.sum()), count + int(mask.sum())
    return total / max(count, 1)


def window_mean(values: list[float], window: int, last: bool) -> float:
    return statistics.fmean(values[-window:] if last else values[:window])


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    colors = {"refreshed": "tab:blue", "frozen": "tab:orange"}
    for name, run in result["runs"].items():
        steps = [m["step"] + 1 for m in run["per_step"]]
        for ax, key in zip(axes[:2], ("acceptance_length", "rollout_tokens_per_s")):
            values = [m[key] for m in run["per_step"]]
            ax.plot(steps, values, color=colors[name], alpha=0.3, linewidth=1)
            ax.plot(steps, _rolling(values, 5), color=colors[name], linewidth=2, label=f"{name} (5-step mean)")
    history = result["runs"]["refreshed"]["refresh_history"]
    axes[2].plot([h["policy_version"] for h in history], [h["kl_before"] for h in history], "o-", color="tab:red",
                 label="before refresh (stale draft)")
    axes[2].plot([h["policy_version"] for h in history], [h["kl_after"] for h in history], "o-", color="tab:green",
                 label="after refresh")
    titles = ("acceptance length (k=4)", "rollout tokens/s (engine thread)", "draft KL to current policy, held out")
    xlabels = ("learner step", "learner step", "policy version")
    for ax, title, xlabel in zip(axes, titles, xlabels):
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    summary = result["summary"]
    fig.suptitle(f"{result['setup']['drafter']}: draft refresh vs frozen; policy KL(final || step 0) = {summary['policy_kl']:.3f} "
                 f"nats/token; final/initial acceptance: refreshed {summary['refreshed_final_over_initial']:.3f}, "
                 f"frozen {summary['frozen_final_over_initial']:.3f}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _rolling(values: list[float], n: int) -> list[float]:
    return [statistics.fmean(values[max(0, i - n + 1): i + 1]) for i in range(len(values))]


def main() -> None:
    args = _args()
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray

    from rollspec.engine.loader import load_model
    from rollspec.launch.config import load_config
    from rollspec.launch.model_paths import resolve_model_paths
    from rollspec.launch.run_dir import RunDir
    from rollspec.launch.train import train

    load_start = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="rs-bench-refresh-"))
    base = [f"algorithm.steps={args.steps}", f"checkpoint.every_steps={args.steps}", "checkpoint.keep_last=1",
            "run.progress=false", f"run.root={root}", *scenario(args)]
    ray.init(num_cpus=8, include_dashboard=False, _temp_dir=f"/tmp/rs-bench-{os.getpid()}", log_to_driver=False)
    runs, configs = {}, {}
    try:
        for name, overrides in RUNS.items():
            config = configs[name] = load_config(args.config, [*base, f"run.name={name}", *overrides])
            start = time.monotonic()
            summary = train(config)
            metrics = RunDir(Path(summary["run_dir"])).metrics()
            runs[name] = {"per_step": [{"step": m["step"], **{k: m.get(k, 0.0) for k in PER_STEP}} for m in metrics],
                          "refresh_history": (summary.get("refresh") or {}).get("history", []),
                          "refresh_failures": (summary.get("refresh") or {}).get("num_refresh_failures", 0),
                          "wall_s": time.monotonic() - start, "run_dir": summary["run_dir"],
                          "ledger_problems": len(summary["ledger_problems"]), "heldout": summary.get("heldout"),
                          "resolved": {k: v for k, v in config.model_dump(mode="json").items()
                                       if k in ("algorithm", "rollout", "learner", "draft_refresh", "data")}}
            print(f"{name}: {time.monotonic() - start:.0f}s, draft version {summary['draft_version']}", flush=True)
    finally:
        ray.shutdown()
    policy_dir = resolve_model_paths(configs["refreshed"]).policy
    initial = load_model(policy_dir).model
    w = args.window
    for name, run in runs.items():
        final = final_policy(Path(run["run_dir"]), args.steps, policy_dir)
        run["policy_kl"] = policy_kl(initial, final, configs[name])
        run["policy_kl_training_prompts"] = policy_kl(initial, final, configs[name], on_training_prompts=True)
        acc = [m["acceptance_length"] for m in run["per_step"]]
        tps = [m["rollout_tokens_per_s"] for m in run["per_step"]]
        run["acceptance_initial"], run["acceptance_final"] = window_mean(acc, w, False), window_mean(acc, w, True)
        run["tokens_per_s_initial"], run["tokens_per_s_final"] = window_mean(tps, w, False), window_mean(tps, w, True)
    ref, frz = runs["refreshed"], runs["frozen"]
    summary = {
        "frozen_final_over_initial": frz["acceptance_final"] / frz["acceptance_initial"],
        "refreshed_final_over_initial": ref["acceptance_final"] / ref["acceptance_initial"],
        "policy_kl": ref["policy_kl"], "policy_kl_frozen_run": frz["policy_kl"],
        "policy_kl_training_prompts": ref["policy_kl_training_prompts"],
        "policy_kl_training_prompts_frozen_run": frz["policy_kl_training_prompts"],
        "final_acceptance_refreshed_over_frozen": ref["acceptance_final"] / frz["acceptance_final"],
        "final_tokens_per_s_refreshed_over_frozen": ref["tokens_per_s_final"] / frz["tokens_per_s_final"],
        "mean_tokens_per_s_refreshed_over_frozen": (statistics.fmean(m["rollout_tokens_per_s"] for m in ref["per_step"])
                                                    / statistics.fmean(m["rollout_tokens_per_s"] for m in frz["per_step"])),
        "wall_s_refreshed_over_frozen": ref["wall_s"] / frz["wall_s"],
        "target_met": (ref["acceptance_final"] / ref["acceptance_initial"] >= 0.95
                       and frz["acceptance_final"] / frz["acceptance_initial"] < 0.95),
    }
    result = {
        "benchmark": "refresh", "date": date.today().isoformat(),
        "command": "python -m bench.refresh " + " ".join([f"--drafter {args.drafter}", f"--lr {args.lr:g}",
                                                          f"--every {args.every}", f"--steps {args.steps}",
                                                          f"--window {w}", *args.overrides]),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "gpu": None,
                    "python": platform.python_version(), "load_avg_1m_start": load_start,
                    "load_avg_1m_end": os.getloadavg()[0]},
        "setup": {"config": str(Path(args.config).relative_to(REPO)) if Path(args.config).is_relative_to(REPO)
                  else args.config, "overrides": scenario(args), "steps": args.steps,
                  "window": w, "drafter": configs["refreshed"].rollout.drafter,
                  "refresh": configs["refreshed"].draft_refresh.model_dump(), "kl_prompts": NUM_KL_PROMPTS,
                  "learner_lr": configs["refreshed"].learner.lr},
        "runs": runs, "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out.with_suffix(".png"))
    print(json.dumps(summary, indent=2))
    print(f"| {result['date']} | {args.steps} | {summary['policy_kl']:.3f} | {ref['acceptance_initial']:.2f} -> "
          f"{ref['acceptance_final']:.2f} ({summary['refreshed_final_over_initial']:.3f}) | "
          f"{frz['acceptance_initial']:.2f} -> {frz['acceptance_final']:.2f} ({summary['frozen_final_over_initial']:.3f}) "
          f"| {summary['final_tokens_per_s_refreshed_over_frozen']:.2f} |")


if __name__ == "__main__":
    main()
