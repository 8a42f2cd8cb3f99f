"""The driver's progress display: a rich progress bar with ETA and the key numbers (reward, acceptance
length, chosen k, tokens/s), and one line per learner step with those and the step-time breakdown."""

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def step_line(m: dict) -> str:
    """One step as text (also what non-terminal logs, e.g. `ray job logs`, show)."""
    drops = ",".join(f"{k}={v}" for k, v in sorted(m.get("sample_drops", {}).items())) or "-"
    return (f"step {m['step'] + 1:>4}  reward {m['reward_mean']:.3f}  acc_len {m['acceptance_length']:.2f}  "
            f"k {m.get('chosen_k_mean', 0.0):.1f}  {m['rollout_tokens_per_s']:>7.0f} tok/s  "
            f"staleness<={m['staleness_max']}  "
            f"v{m['policy_version']}/d{m['draft_version']}  | step {m['step_s']:.2f}s = sync {m['weight_sync_s']:.2f} "
            f"gen {m['generate_s']:.2f} reward {m['reward_s']:.2f} wait {m['learner_wait_s']:.2f} "
            f"train {m['train_s']:.2f} publish {m['publish_s']:.2f} (draft refresh {m.get('draft_refresh_s', 0.0):.2f})"
            f"  drops {drops}")


BAR_WIDTH = 20
BAR_FIXED_WIDTH = 6 + BAR_WIDTH + 1 + 2 + 8 + 4 + 8  # "train", the bar, "n/N", elapsed, "eta", remaining


def _summaries(m: dict) -> list[str]:
    """The bar's key numbers, longest first."""
    k = m.get("chosen_k_mean", 0.0)
    return [f"reward {m['reward_mean']:.3f} acc_len {m['acceptance_length']:.2f} k {k:.1f} "
            f"{m['rollout_tokens_per_s']:.0f} tok/s {m['step_s']:.1f} s/step",
            f"reward {m['reward_mean']:.3f} acc {m['acceptance_length']:.2f} k {k:.1f}",
            f"acc {m['acceptance_length']:.2f}"]


class StepProgress:
    """Context manager; `update(metrics)` after every step."""

    def __init__(self, total_steps: int, done_steps: int = 0, *, enabled: bool = True, console: Console | None = None):
        self.console = console or Console(soft_wrap=True)
        self._enabled = enabled
        self._progress = Progress(TextColumn("[bold]train"), BarColumn(bar_width=BAR_WIDTH), MofNCompleteColumn(),
                                  TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                  TextColumn("{task.fields[info]}"), console=self.console, disable=not enabled)
        self._task = self._progress.add_task("train", total=total_steps, completed=done_steps, info="")

    def __enter__(self) -> "StepProgress":
        self._progress.reset(self._task, total=self._progress.tasks[0].total,
                             completed=self._progress.tasks[0].completed)  # elapsed and ETA from the first step
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def update(self, metrics: dict) -> None:
        self._progress.console.print(step_line(metrics), highlight=False)
        # The longest summary that fits beside the bar: rich would squeeze the counts and times instead.
        room = self.console.width - BAR_FIXED_WIDTH - len(str(self._progress.tasks[0].total)) * 2
        info = next((text for text in _summaries(metrics) if len(text) <= room), "")
        self._progress.update(self._task, completed=metrics["step"] + 1, info=info)

    def log(self, text: str) -> None:
        self._progress.console.print(text, highlight=False)
