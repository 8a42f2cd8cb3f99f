"""`rollspec report RUN_DIR`: the run's curves as PNGs and a markdown summary, in RUN_DIR/report/.

Reads what the run directory holds (run_dir.py): metrics.jsonl (required, one record per learner
step), config.yaml and summary.json (used when present, so a run still going can be reported).
"""

import json
import statistics
from pathlib import Path
from typing import Any

import yaml

from rollspec.launch.run_dir import CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, RunDir

REPORT_DIR = "report"
REPORT_FILE = "report.md"
FIGURES = (("reward", "Reward"), ("acceptance", "Acceptance"), ("k", "Speculation depth"),
           ("throughput", "Throughput"), ("step_time", "Step time"), ("staleness", "Staleness"))


class ReportError(ValueError):
    """The directory is not a run directory with step metrics."""


def load_run(path: Path) -> tuple[list[dict], dict[str, Any], dict[str, Any]]:
    """(per-step metrics, config, summary) of a run directory; config / summary empty if absent."""
    if not path.is_dir():
        raise ReportError(f"{path} is not a directory (expected a run directory, <run.root>/<run.name>)")
    history = RunDir(path).metrics()
    if not history:
        raise ReportError(f"{path / METRICS_FILE} is missing or empty: no learner step has finished in this run")
    config = yaml.safe_load((path / CONFIG_FILE).read_text()) if (path / CONFIG_FILE).is_file() else {}
    summary = json.loads((path / SUMMARY_FILE).read_text()) if (path / SUMMARY_FILE).is_file() else {}
    return history, config or {}, summary


def write_report(path: Path) -> Path:
    """Draw every figure and write report.md under path/report; returns the markdown's path."""
    from rollspec.launch import report_plots as plots  # matplotlib: only once the run directory checks out

    history, config, summary = load_run(path)
    out = path / REPORT_DIR
    out.mkdir(exist_ok=True)
    bound = (config.get("algorithm") or {}).get("max_staleness")
    plots.plot_reward(history, out / "reward.png")
    plots.plot_acceptance(history, out / "acceptance.png")
    plots.plot_k(history, out / "k.png")
    plots.plot_throughput(history, out / "throughput.png")
    plots.plot_step_time(history, out / "step_time.png")
    plots.plot_staleness(history, out / "staleness.png", bound)
    markdown = out / REPORT_FILE
    markdown.write_text(render_markdown(path, history, config, summary))
    return markdown


def _mean(history: list[dict], key: str) -> float:
    values = [m[key] for m in history if key in m]
    return statistics.fmean(values) if values else 0.0


def _third(values: list[float], last: bool) -> float:
    n = max(1, len(values) // 3)
    part = values[-n:] if last else values[:n]
    return statistics.fmean(part) if part else 0.0


def _position_rates(history: list[dict]) -> list[float]:
    drafted: list[int] = []
    accepted: list[int] = []
    for m in history:
        for totals, key in ((drafted, "step_drafted_per_position"), (accepted, "step_accepted_per_position")):
            values = m.get(key) or []
            totals.extend([0] * (len(values) - len(totals)))
            for j, value in enumerate(values):
                totals[j] += value
    return [a / d for a, d in zip(accepted, drafted) if d > 0]


def key_numbers(history: list[dict], summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(what, value) rows of the summary table."""
    rewards = [m["reward_mean"] for m in history]
    drops: dict[str, int] = {}
    for m in history:
        for reason, n in (m.get("sample_drops") or {}).items():
            drops[reason] = drops.get(reason, 0) + n
    rates = _position_rates(history)
    phases = ", ".join(f"{p.removesuffix('_s')} {_mean(history, p):.2f}" for p in
                       ("weight_sync_s", "generate_s", "reward_s", "learner_wait_s", "train_s", "publish_s",
                        "draft_refresh_s"))
    rows = [
        ("learner steps", f"{len(history)}"),
        ("reward, first third -> last third", f"{_third(rewards, False):.3f} -> {_third(rewards, True):.3f}"),
        ("acceptance length (mean over steps)", f"{_mean(history, 'acceptance_length'):.2f}"),
        ("acceptance rate by draft position", ", ".join(f"{r:.2f}" for r in rates) or "no drafts"),
        ("chosen k (mean over steps)", f"{_mean(history, 'chosen_k_mean'):.2f}"),
        ("rollout tokens/s (mean over steps)", f"{_mean(history, 'rollout_tokens_per_s'):.0f}"),
        ("step time, s (mean)", f"{_mean(history, 'step_s'):.2f}"),
        ("step-time breakdown, s (mean)", phases),
        ("staleness, max over the run", f"{max(m['staleness_max'] for m in history)}"),
        ("staleness violations", f"{sum(m.get('staleness_violations', 0) for m in history)}"),
        ("policy / draft version at the end", f"v{history[-1]['policy_version']} / d{history[-1]['draft_version']}"),
        ("samples dropped in trained groups", ", ".join(f"{k} {v}" for k, v in sorted(drops.items())) or "none"),
    ]
    if summary:
        restarts, groups = summary.get("actor_restarts") or {}, summary.get("groups") or {}
        heldout = summary.get("heldout") or {}
        if heldout.get("initial") and heldout.get("final"):
            rows.append(("held-out reward, starting -> final weights",
                         f"{heldout['initial']['reward_mean']:.3f} -> {heldout['final']['reward_mean']:.3f} "
                         f"({heldout['final'].get('num_samples', '?')} samples)"))
        rows += [("wall time, s (start-up)", f"{summary.get('wall_s', 0.0):.1f} ({summary.get('startup_s', 0.0):.1f})"),
                 ("prompt groups trained / dropped",
                  f"{groups.get('trained', '?')} / {groups.get('dropped', '?')}"),
                 ("actor restarts", ", ".join(f"{k} {v}" for k, v in sorted(restarts.items()) if v) or "none"),
                 ("ledger problems", f"{len(summary.get('ledger_problems') or [])}")]
    return rows


def render_markdown(path: Path, history: list[dict], config: dict[str, Any], summary: dict[str, Any]) -> str:
    """The report's text: what ran, the key numbers, the figures."""
    algorithm, rollout = config.get("algorithm") or {}, config.get("rollout") or {}
    setup = (f"drafter `{rollout.get('drafter', '?')}`, depth `{rollout.get('depth', '?')}` (k max "
             f"{rollout.get('k', '?')}), {algorithm.get('prompts_per_step', '?')} prompts x "
             f"{algorithm.get('group_size', '?')} samples per step, max staleness {algorithm.get('max_staleness', '?')}")
    lines = [f"# Run report: {path.name}", "", f"Run directory `{path}`", "",
             f"Setup: {setup}." if config else "No config.yaml in the run directory.", "",
             "| what | value |", "|---|---|"]
    lines += [f"| {what} | {value} |" for what, value in key_numbers(history, summary)]
    if not summary:
        lines += ["", "No summary.json yet: the run has not finished (numbers cover the steps so far)."]
    lines += ["", "Step-time phases are consecutive in synchronous runs; with staleness >= 1 generation overlaps "
              "training, so the stacked phases can exceed the step's wall time. The learner's wait overlaps "
              "generation and reward; draft refresh runs beside them.", ""]
    for name, title in FIGURES:
        lines += [f"## {title}", "", f"![{title}]({name}.png)", ""]
    return "\n".join(lines)
