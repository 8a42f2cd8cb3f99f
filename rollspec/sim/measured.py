"""Measured costs of a real pipeline, the simulator's calibration input. Schema `rollspec.sim.measured/v1` (JSON):

    {
      "schema": "rollspec.sim.measured/v1",
      "machine": "2-core CPU, shared, torch CPU, 1 thread",   # where it was measured (free text)
      "model": "policy ... / drafter ...",                     # what was measured (free text)
      "note": "...",                                          # optional, free text
      "prompt_tokens": 8,         # prompt length of every request in the runs below
      "max_num_seqs": 64,         # engine rows (requests beyond wait for a free row)
      "k_max": 8,                 # deepest draft the adaptive depth may choose
      "fixed_k": 4,               # depth of the "fixed" speculation runs
      "cost": {                   # seconds, profiled on the device
        "context_kind": "longest",       # attention cost follows the longest row (padded engine) or "mean" (paged)
        "levels": [                      # one profile per context length; >= 1, linear in context between them
          {"context_tokens": 28,         # cached tokens per row (of that kind) while this level was profiled
           "target_s": [[B, q, s], ...], # one verify forward of q tokens x B rows, incl. per-step bookkeeping;
                                         # >= 2 distinct q (q = 1 is a plain decode step)
           "draft_s":  [[B, s], ...]}    # drafting one position for B rows
        ],
        "prefill_s": [[rows, s], ...],   # admitting `rows` requests of prompt_tokens each
        "draft_admit_s": [[B, s], ...]   # optional: extra drafting of the first speculative step after rows
      },                                 # join a batch of B (the drafter catches up on their prompts)
      "acceptance": [a_1, ..., a_kmax],  # conditional acceptance per draft position, P(accept j | accepted j-1)
      "response_lengths": [n, ...],      # generated tokens per response, resampled for step runs
      "training": {                      # per step, the pipeline's non-rollout costs
        "prompts_per_step": 4, "group_size": 8,
        "reward_s": 0.01,                # finish -> score latency of one trajectory
        "learner_fixed_s": 0.2, "learner_s_per_token": 1e-4,   # learner seconds = fixed + per_token * tokens
        "weight_sync_s": 0.05            # publish + load new weights; rollout pauses meanwhile
      },
      "drains": [                        # optional: one batch generated to completion, all queued at t = 0
        {"name": "drain_plain", "speculation": "plain" | "fixed" | "adaptive",
         "lengths": [n, ...], "max_num_seqs": 32,   # max_num_seqs optional, default the top-level one
         "measured_s": 1.23}
      ],
      "steps": [                         # optional: mean GRPO step time of a real pipeline run
        {"name": "sync_plain", "speculation": "plain", "max_staleness": 0, "colocated": false,
         "num_steps": 8, "measured_step_s": 2.5,   # mean interval between learner-step ends, leaving out
                                                   # the first max_staleness + 1 steps (pipeline fill)
         "lengths": [n, ...]}                      # optional: response lengths in dispatch order, replayed
      ]                                            # instead of resampling response_lengths

Step names sync_plain, sync_spec, async_plain, async_spec are the four configurations the
calibration report checks for; "spec" runs may use fixed or adaptive speculation.
    }

An example lives in rollspec/sim/scenarios/measured-example.json.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollspec.sim.speculation import Speculation
from rollspec.sim.table_cost import CostLevel, TableCost

SCHEMA = "rollspec.sim.measured/v1"


class MeasurementError(ValueError):
    """A measured-costs document that does not follow schema rollspec.sim.measured/v1."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DrainRun:
    """A batch generated to completion on the real engine, and how long it took."""

    name: str
    speculation: Speculation
    lengths: tuple[int, ...]
    max_num_seqs: int
    measured_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class StepRun:
    """A real pipeline run's mean GRPO step time under one configuration."""

    name: str
    speculation: Speculation
    max_staleness: int
    colocated: bool
    num_steps: int
    measured_step_s: float
    lengths: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Measured:
    """A parsed, validated measured-costs document (see the module docstring for the schema)."""

    machine: str
    model: str
    note: str
    prompt_tokens: int
    max_num_seqs: int
    k_max: int
    fixed_k: int
    levels: tuple[CostLevel, ...]
    context_kind: str
    prefill_s: dict[int, float]
    draft_admit_s: dict[int, float]
    acceptance: tuple[float, ...]
    response_lengths: tuple[int, ...]
    training: dict[str, float]
    drains: tuple[DrainRun, ...]
    steps: tuple[StepRun, ...]

    def cost(self) -> TableCost:
        """A fresh cost model over the measured tables (it carries the current context, so never share one)."""
        return TableCost(levels=self.levels, prefill_s=self.prefill_s, context_kind=self.context_kind,
                         draft_admit_s=self.draft_admit_s or None)


_TRAINING_KEYS = ("prompts_per_step", "group_size", "reward_s", "learner_fixed_s", "learner_s_per_token",
                  "weight_sync_s")


def load_measured(source: str | Path | dict[str, Any]) -> Measured:
    """Parse a measured-costs document from a JSON file path or an already-loaded dict."""
    doc = json.loads(Path(source).read_text()) if isinstance(source, (str, Path)) else source
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise MeasurementError(f"expected a document with schema {SCHEMA!r}, got {got!r}")
    cost = _get(doc, "cost", dict)
    training = _get(doc, "training", dict)
    k_max, fixed_k = _get(doc, "k_max", int), _get(doc, "fixed_k", int)
    acceptance = tuple(float(a) for a in _get(doc, "acceptance", list))
    if len(acceptance) < max(k_max, fixed_k) or not all(0.0 <= a <= 1.0 for a in acceptance):
        raise MeasurementError(f"acceptance needs max(k_max, fixed_k) = {max(k_max, fixed_k)} values in [0, 1], "
                               f"got {list(acceptance)!r}")
    lengths = tuple(int(n) for n in _get(doc, "response_lengths", list))
    if not lengths or min(lengths) < 1:
        raise MeasurementError(f"response_lengths must be a non-empty list of ints >= 1, got {list(lengths[:5])!r}")
    return Measured(
        machine=_get(doc, "machine", str), model=_get(doc, "model", str), note=str(doc.get("note", "")),
        prompt_tokens=_get(doc, "prompt_tokens", int), max_num_seqs=_get(doc, "max_num_seqs", int),
        k_max=k_max, fixed_k=fixed_k,
        levels=tuple(_level(level) for level in _get(cost, "levels", list)),
        context_kind=_context_kind(cost.get("context_kind")),
        prefill_s={int(b): float(s) for b, s in _rows(cost, "prefill_s", 2)},
        draft_admit_s=({int(b): float(s) for b, s in _rows(cost, "draft_admit_s", 2)}
                       if "draft_admit_s" in cost else {}),
        acceptance=acceptance, response_lengths=lengths,
        training={key: float(_get(training, key, (int, float))) for key in _TRAINING_KEYS},
        drains=tuple(_drain(d, _get(doc, "max_num_seqs", int)) for d in doc.get("drains", [])),
        steps=tuple(_step(s) for s in doc.get("steps", [])))


def _get(doc: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in doc:
        raise MeasurementError(f"measured document is missing {key!r}")
    value = doc[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise MeasurementError(f"measured {key!r} must be {kind}, got {value!r}")
    return value


def _rows(cost: dict[str, Any], key: str, width: int) -> list[list[float]]:
    rows = _get(cost, key, list)
    if not rows or not all(isinstance(r, list) and len(r) == width for r in rows):
        raise MeasurementError(f"cost {key} must be a non-empty list of {width}-element rows, got {rows[:3]!r}")
    return rows


def _level(level: Any) -> CostLevel:
    if not isinstance(level, dict):
        raise MeasurementError(f"cost.levels entries must be mappings, got {level!r}")
    return CostLevel(context_tokens=float(_get(level, "context_tokens", (int, float))),
                     target_s={(int(b), int(q)): float(s) for b, q, s in _rows(level, "target_s", 3)},
                     draft_s={int(b): float(s) for b, s in _rows(level, "draft_s", 2)})


def _context_kind(value: Any) -> str:
    if value not in ("longest", "mean"):
        raise MeasurementError(f"cost.context_kind must be 'longest' or 'mean', got {value!r}")
    return value


def _speculation(value: Any) -> Speculation:
    if value not in {m.value for m in Speculation}:
        raise MeasurementError(f"speculation must be one of {[m.value for m in Speculation]}, got {value!r}")
    return Speculation(value)


def _drain(run: dict[str, Any], max_num_seqs: int) -> DrainRun:
    return DrainRun(name=_get(run, "name", str), speculation=_speculation(run.get("speculation")),
                    lengths=tuple(int(n) for n in _get(run, "lengths", list)),
                    max_num_seqs=int(run.get("max_num_seqs", max_num_seqs)),
                    measured_s=float(_get(run, "measured_s", (int, float))))


def _step(run: dict[str, Any]) -> StepRun:
    return StepRun(name=_get(run, "name", str), speculation=_speculation(run.get("speculation")),
                   max_staleness=_get(run, "max_staleness", int), colocated=_get(run, "colocated", bool),
                   num_steps=_get(run, "num_steps", int),
                   measured_step_s=float(_get(run, "measured_step_s", (int, float))),
                   lengths=tuple(int(n) for n in run.get("lengths", [])))
