"""What the depth scheduler decided and what happened: per-step records and running totals for logs and metrics."""

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True, kw_only=True)
class DepthDecision:
    """One verify step: the depth used, the prediction it was chosen on, and the measured outcome.

    `catch_up_tokens` is the width of the drafter's catch-up this step ran (0 at k = 0), and
    `predicted_catch_up_s` the part of `predicted_step_s` charged for it beyond a steady step's.
    `is_check` marks a plain step run while speculating so the realized check can compare (RealizedCheck).

    Predictions come from the estimates as they were before this step's observation, so
    predicted vs realized is an honest out-of-sample check of the model.
    """

    step: int
    batch_size: int
    k: int
    is_probe: bool
    is_check: bool = False
    catch_up_tokens: int = 0
    predicted_tokens: float
    predicted_catch_up_s: float = 0.0
    predicted_step_s: float
    realized_tokens: int
    realized_step_s: float

    @property
    def predicted_tokens_per_s(self) -> float:
        return self.predicted_tokens / self.predicted_step_s

    @property
    def realized_tokens_per_s(self) -> float:
        return self.realized_tokens / self.realized_step_s if self.realized_step_s > 0 else 0.0

    def as_metrics(self) -> dict[str, float]:
        """Flat numeric view for a metrics sink or a JSON log line."""
        return {
            "step": self.step,
            "batch_size": self.batch_size,
            "k": self.k,
            "is_probe": float(self.is_probe),
            "is_check": float(self.is_check),
            "catch_up_tokens": self.catch_up_tokens,
            "predicted_tokens": self.predicted_tokens,
            "predicted_catch_up_s": self.predicted_catch_up_s,
            "predicted_step_s": self.predicted_step_s,
            "predicted_tokens_per_s": self.predicted_tokens_per_s,
            "realized_tokens": self.realized_tokens,
            "realized_step_s": self.realized_step_s,
            "realized_tokens_per_s": self.realized_tokens_per_s,
        }


@dataclass(slots=True, kw_only=True)
class DepthStats:
    """Running totals since the scheduler started. `num_steps_by_k[k]` counts steps run at depth k.

    `num_depth_switches` counts changes of the chosen (non-probe) depth between decisions;
    a steady regime should keep it small. `num_checks` counts plain steps run for the realized
    check, `num_vetoes` plans where it turned a k > 0 into plain decoding (each standing like a plain choice),
    `num_measured_starts` plans where speculation's realized tokens/s turned plain decoding into k > 0 (RealizedGain),
    `num_neighbour_switches` plans whose k > 0 a neighbour's realized tokens/s overruled and `num_neighbour_trials`
    trials at a neighbour of k (NeighbourArbiter).
    """

    num_steps: int = 0
    num_probes: int = 0
    num_depth_switches: int = 0
    num_checks: int = 0
    num_vetoes: int = 0
    num_measured_starts: int = 0
    num_neighbour_switches: int = 0
    num_neighbour_trials: int = 0
    num_steps_by_k: list[int] = field(default_factory=list)
    num_tokens: int = 0
    num_drafted: int = 0
    num_draft_accepted: int = 0
    predicted_tokens: float = 0.0
    predicted_s: float = 0.0
    realized_s: float = 0.0

    def copy(self) -> "DepthStats":
        return DepthStats(
            num_steps=self.num_steps,
            num_probes=self.num_probes,
            num_depth_switches=self.num_depth_switches,
            num_checks=self.num_checks,
            num_vetoes=self.num_vetoes,
            num_measured_starts=self.num_measured_starts,
            num_neighbour_switches=self.num_neighbour_switches,
            num_neighbour_trials=self.num_neighbour_trials,
            num_steps_by_k=list(self.num_steps_by_k),
            num_tokens=self.num_tokens,
            num_drafted=self.num_drafted,
            num_draft_accepted=self.num_draft_accepted,
            predicted_tokens=self.predicted_tokens,
            predicted_s=self.predicted_s,
            realized_s=self.realized_s,
        )

    def add(self, decision: DepthDecision, num_drafted: int) -> None:
        self.num_steps += 1
        self.num_probes += decision.is_probe
        self.num_checks += decision.is_check
        self.num_steps_by_k[decision.k] += 1
        self.num_tokens += decision.realized_tokens
        self.num_drafted += num_drafted
        self.num_draft_accepted += decision.realized_tokens - decision.batch_size
        self.predicted_tokens += decision.predicted_tokens
        self.predicted_s += decision.predicted_step_s
        self.realized_s += decision.realized_step_s

    def with_runs(self, runs: "Sequence[Entry]") -> "DepthStats":
        """A copy with `runs` (plain runs as tuples, record runs) counted in."""
        stats = self.copy()
        for run in runs:
            if isinstance(run, tuple):
                stats.add_plain_run(*run[1:])
            else:
                run.add_to(stats)  # type: ignore[union-attr]
        return stats

    def add_plain_run(self, batch_size: int, predicted_step_s: float, realized_s: list[float]) -> None:
        """Plain steps at one batch size and one predicted step time, as `add` would count them one by one."""
        n = len(realized_s)
        self.num_steps += n
        self.num_steps_by_k[0] += n
        self.num_tokens += n * batch_size
        self.predicted_tokens += float(n * batch_size)
        self.predicted_s += n * predicted_step_s
        self.realized_s += sum(realized_s)

    def add_steady_run(self, batch_size: int, k: int, num_tokens: list[int], predicted_tokens: float,
                       predicted_s: list[float], realized_s: list[float]) -> None:
        """Steps at one batch size and depth k, none a probe or check, as `add` would count them one by one."""
        n = len(realized_s)
        self.num_steps += n
        self.num_steps_by_k[k] += n
        self.num_drafted += n * k * batch_size
        for tokens, predicted, realized in zip(num_tokens, predicted_s, realized_s):
            self.num_tokens += tokens
            self.num_draft_accepted += tokens - batch_size
            self.predicted_tokens += predicted_tokens
            self.predicted_s += predicted
            self.realized_s += realized

    @property
    def mean_accepted_length(self) -> float:
        """Tokens emitted per sequence per verify step (1 = plain decoding), the papers' acceptance length."""
        rows = self.num_tokens - self.num_draft_accepted
        return self.num_tokens / rows if rows else 0.0


class RecordRun(Protocol):
    """Steps kept in bulk whose records are built when read (steady.SteadyRecords)."""

    def decisions(self) -> list[DepthDecision]: ...


# A decision, a plain run as (first step, batch size, predicted s, realized s of each step), or a record run.
Entry = DepthDecision | RecordRun | tuple[int, int, float, list[float]]


class DecisionLog:
    """The most recent decisions, with runs of quiet plain steps kept as their step times and runs of steady
    speculative steps as theirs until read: making a record per step cost a few microseconds each inside the
    engine, and nothing reads them per step."""

    def __init__(self, maxlen: int) -> None:
        self._maxlen = maxlen
        self._entries: deque[Entry] = deque(maxlen=maxlen)

    def append(self, decision: DepthDecision) -> None:
        self._entries.append(decision)

    def append_plain_run(self, first_step: int, batch_size: int, predicted_s: float, realized_s: list[float]) -> None:
        self._entries.append((first_step, batch_size, predicted_s, realized_s))

    def append_run(self, run: RecordRun) -> None:
        self._entries.append(run)

    def decisions(self, pending: Sequence[Entry] = ()) -> list[DepthDecision]:
        """The last `maxlen` decisions, oldest first, with runs not yet appended (`pending`) at the end."""
        out: list[DepthDecision] = []
        for entry in [*self._entries, *pending]:
            out.extend(_decisions(entry))
        return out[-self._maxlen:]

    def last(self, pending: Sequence[Entry] = ()) -> DepthDecision | None:
        entry = pending[-1] if pending else (self._entries[-1] if self._entries else None)
        return None if entry is None else _decisions(entry)[-1]


def _decisions(entry: Entry) -> list[DepthDecision]:
    if isinstance(entry, DepthDecision):
        return [entry]
    if isinstance(entry, tuple):
        return _plain_run(*entry)
    return entry.decisions()


def plain_runs(end_step: int, runs: list[tuple[int, list[float]]],
               target_s: Callable[[int, int], float]) -> list[tuple[int, int, float, list[float]]]:
    """Quiet plain steps ending before `end_step` as (first step, batch size, predicted s, realized s of each) runs.
    Their prediction (`target_s(B, 1)`) is read now: quiet steps teach the cost model nothing, and they are recorded
    before any step that does (DepthScheduler)."""
    out, first = [], end_step - sum(len(times) for _, times in runs)
    for batch_size, times in runs:
        out.append((first, batch_size, target_s(batch_size, 1), times))
        first += len(times)
    return out


def _plain_run(first_step: int, batch_size: int, predicted_s: float, realized_s: list[float]) -> list[DepthDecision]:
    return [DepthDecision(step=first_step + i, batch_size=batch_size, k=0, is_probe=False,
                          predicted_tokens=float(batch_size), predicted_step_s=predicted_s,
                          realized_tokens=batch_size, realized_step_s=seconds) for i, seconds in enumerate(realized_s)]
