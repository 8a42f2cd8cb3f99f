"""Progress display for zoo building: one bar per phase with step, loss, elapsed time and ETA.

Training code only sees `PhaseProgress.advance`; whether anything is drawn is decided once, by
the reporter `build_zoo` creates (rich on stderr, or nothing for tests and library callers).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Protocol


class PhaseProgress(Protocol):
    """The bar of one running phase."""

    def advance(self, *, loss: float | None = None) -> None:
        """One step done; `loss` (if given) is shown next to the bar."""


class ProgressReporter(Protocol):
    """Where a build reports its phases: a bar per phase, and notes between them."""

    def phase(self, name: str, total: int) -> contextlib.AbstractContextManager[PhaseProgress]:
        """A bar for a phase of `total` steps, closed when the context exits."""

    def note(self, text: str) -> None:
        """A line of text above the bars (a phase result, a timing)."""


class _SilentPhase:
    def advance(self, *, loss: float | None = None) -> None:
        pass


class SilentProgress:
    """Draws nothing."""

    def __enter__(self) -> SilentProgress:
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    @contextlib.contextmanager
    def phase(self, name: str, total: int) -> Iterator[PhaseProgress]:
        yield _SilentPhase()

    def note(self, text: str) -> None:
        pass


class _RichPhase:
    def __init__(self, progress, task_id) -> None:
        self._progress, self._task_id = progress, task_id

    def advance(self, *, loss: float | None = None) -> None:
        text = "" if loss is None or not math.isfinite(loss) else f"loss {loss:.4f}"
        self._progress.update(self._task_id, advance=1, loss=text)


class RichProgress:
    """rich bars on stderr: `phase  ━━━━━━━━  120/400  loss 0.8123  0:00:41  eta 0:01:35`.
    Used as a context manager around the whole build so finished phases stay on screen."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description:<18}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[loss]:<12}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=Console(stderr=True))

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._progress.stop()

    @contextlib.contextmanager
    def phase(self, name: str, total: int) -> Iterator[PhaseProgress]:
        task_id = self._progress.add_task(name, total=total, loss="")
        yield _RichPhase(self._progress, task_id)
        self._progress.update(task_id, completed=total)

    def note(self, text: str) -> None:
        self._progress.console.print(text)
