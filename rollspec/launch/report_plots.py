"""The run report's figures: one PNG per question a user asks of a run, drawn from metrics.jsonl.

Each function takes the per-step records and a path and writes one figure. Fields a run did not
record (older runs, no drafter) are drawn as absent rather than as zeros.
"""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt  # noqa: E402

STACKED_PHASES = ("weight_sync_s", "generate_s", "reward_s", "train_s", "publish_s")
PHASE_COLORS = {"weight_sync_s": "#8c6bb1", "generate_s": "#2b8cbe", "reward_s": "#41ab5d", "train_s": "#fd8d3c",
                "publish_s": "#e31a1c", "other": "#bdbdbd"}
DPI = 110


def _steps(history: list[dict]) -> list[int]:
    return [m["step"] + 1 for m in history]


def _rolling(values: list[float], window: int) -> list[float]:
    out = []
    for i in range(len(values)):
        part = values[max(0, i - window + 1): i + 1]
        out.append(sum(part) / len(part))
    return out


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_reward(history: list[dict], path: Path) -> Path:
    """Mean reward per step with a rolling mean; share of groups whose rewards differ (GRPO's signal)."""
    steps, rewards = _steps(history), [m["reward_mean"] for m in history]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True, height_ratios=(2, 1))
    top.plot(steps, rewards, "o-", ms=3, lw=1, alpha=0.6, label="reward mean (step)")
    top.plot(steps, _rolling(rewards, max(1, len(rewards) // 10)), lw=2.2, label="rolling mean")
    top.set_ylabel("reward")
    top.set_title("Reward of the trained samples")
    top.legend(loc="best")
    top.grid(alpha=0.3)
    share = [m.get("groups_with_signal", 0) / m["num_groups"] if m.get("num_groups") else 0.0 for m in history]
    bottom.bar(steps, share, color="#74a9cf")
    bottom.set_ylim(0, 1)
    bottom.set_ylabel("groups with\nreward signal")
    bottom.set_xlabel("learner step")
    bottom.grid(alpha=0.3)
    return _save(fig, path)


def plot_acceptance(history: list[dict], path: Path) -> Path:
    """Mean acceptance length per step, and the acceptance rate at each draft position."""
    steps = _steps(history)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(steps, [m["acceptance_length"] for m in history], "o-", ms=3, color="#2b8cbe")
    left.axhline(1.0, color="grey", lw=0.8, ls="--")
    left.set_title("Acceptance length (tokens per verify step)")
    left.set_xlabel("learner step")
    left.grid(alpha=0.3)
    num_positions = max((len(m.get("step_drafted_per_position") or []) for m in history), default=0)
    for j in range(num_positions):
        rates = []  # NaN where a step drafted nothing at this position: a gap, not a line across it
        for m in history:
            drafted, accepted = m.get("step_drafted_per_position") or [], m.get("step_accepted_per_position") or []
            rates.append(accepted[j] / drafted[j] if j < len(drafted) and drafted[j] > 0 else math.nan)
        right.plot(steps, rates, "o-", ms=3, label=f"position {j + 1}")
    right.set_ylim(0, 1.02)
    right.set_title("Acceptance rate by draft position")
    right.set_xlabel("learner step")
    right.grid(alpha=0.3)
    if num_positions:
        right.legend(loc="best", fontsize=8)
    else:
        right.text(0.5, 0.5, "no drafts proposed", ha="center", va="center", transform=right.transAxes)
    return _save(fig, path)


def plot_k(history: list[dict], path: Path) -> Path:
    """Mean chosen speculation depth per step, and the share of engine steps run at each k."""
    steps = _steps(history)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(steps, [m.get("chosen_k_mean", 0.0) for m in history], "o-", ms=3, color="#fd8d3c")
    left.set_title("Chosen speculation depth k (mean over engine steps)")
    left.set_xlabel("learner step")
    left.set_ylim(bottom=0)
    left.grid(alpha=0.3)
    by_k = [m.get("step_num_steps_by_k") or [] for m in history]
    k_max = max((len(row) for row in by_k), default=0)
    shares = [[(row[k] / sum(row) if k < len(row) and sum(row) else 0.0) for row in by_k] for k in range(k_max)]
    if k_max:
        right.stackplot(steps, shares, labels=[f"k={k}" for k in range(k_max)], alpha=0.85)
        right.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    else:
        right.text(0.5, 0.5, "no per-k counts recorded", ha="center", va="center", transform=right.transAxes)
    right.set_ylim(0, 1)
    right.set_title("Share of engine steps at each k")
    right.set_xlabel("learner step")
    return _save(fig, path)


def plot_throughput(history: list[dict], path: Path) -> Path:
    """Rollout tokens per second of engine time, per step, and the tokens each step generated."""
    steps = _steps(history)
    fig, left = plt.subplots(figsize=(8, 4))
    left.plot(steps, [m["rollout_tokens_per_s"] for m in history], "o-", ms=3, color="#238b45", label="tokens/s")
    left.set_ylabel("tokens / s of engine time")
    left.set_xlabel("learner step")
    left.set_ylim(bottom=0)
    left.grid(alpha=0.3)
    right = left.twinx()
    right.bar(steps, [m.get("rollout_tokens", 0) for m in history], color="#c7e9c0", alpha=0.5, zorder=0,
              label="tokens generated")
    right.set_ylabel("tokens generated in the step")
    left.set_zorder(right.get_zorder() + 1)
    left.patch.set_visible(False)
    left.set_title("Rollout throughput")
    return _save(fig, path)


def plot_step_time(history: list[dict], path: Path) -> Path:
    """Step wall time split into its phases (stacked), with the learner's wait and draft refresh as lines."""
    steps = _steps(history)
    fig, ax = plt.subplots(figsize=(9, 4.6))
    bottom = [0.0] * len(history)
    for phase in STACKED_PHASES:
        values = [m.get(phase, 0.0) for m in history]
        ax.bar(steps, values, bottom=bottom, color=PHASE_COLORS[phase], label=phase.removesuffix("_s"))
        bottom = [b + v for b, v in zip(bottom, values)]
    other = [max(0.0, m["step_s"] - b) for m, b in zip(history, bottom)]
    ax.bar(steps, other, bottom=bottom, color=PHASE_COLORS["other"], label="other")
    ax.plot(steps, [m["step_s"] for m in history], "k_", ms=12, mew=2, label="step wall time")
    ax.plot(steps, [m.get("learner_wait_s", 0.0) for m in history], "--", color="#54278f", lw=1.2,
            label="learner wait (overlaps)")
    ax.plot(steps, [m.get("draft_refresh_s", 0.0) for m in history], ":", color="#000000", lw=1.5,
            label="draft refresh (beside)")
    ax.set_xlabel("learner step")
    ax.set_ylabel("seconds")
    ax.set_title("Step-time breakdown")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def plot_staleness(history: list[dict], path: Path, max_staleness: int | None) -> Path:
    """Staleness (step - policy version) of the trained groups: per step, and over the whole run."""
    steps = _steps(history)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(steps, [m["staleness_max"] for m in history], "o-", ms=3, label="max")
    left.plot(steps, [m.get("staleness_mean", 0.0) for m in history], "s-", ms=3, label="mean")
    if max_staleness is not None:
        left.axhline(max_staleness, color="#e31a1c", ls="--", lw=1, label=f"bound ({max_staleness})")
    left.set_title("Staleness per step")
    left.set_xlabel("learner step")
    top = max([m["staleness_max"] for m in history] + [max_staleness or 0, 1])
    left.set_ylim(-0.2, top + 0.5)
    left.set_yticks(range(top + 1))
    left.legend(loc="best")
    left.grid(alpha=0.3)
    counts: dict[int, int] = {}
    for m in history:
        for staleness, n in (m.get("staleness_counts") or {}).items():
            counts[int(staleness)] = counts.get(int(staleness), 0) + n
    if counts:
        xs = list(range(max(counts) + 1))
        right.bar(xs, [counts.get(x, 0) for x in xs], color="#6baed6")
        right.set_xticks(xs)
    right.set_title("Trained groups by staleness")
    right.set_xlabel("staleness (steps)")
    right.set_ylabel("groups")
    return _save(fig, path)
