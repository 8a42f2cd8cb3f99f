"""The one optimization loop every zoo phase runs: AdamW, warmup + cosine schedule, gradient
clipping, a loss per step, and what the manifest records about it."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import torch
from torch import nn

from rollspec.models.progress import PhaseProgress
from rollspec.models.recipe import Phase

BatchT = TypeVar("BatchT")
CURVE_POINTS = 20  # loss curve resolution kept in the manifest


class DivergedError(RuntimeError):
    """A training loss became NaN or infinite."""

    def __init__(self, phase: str, step: int, loss: float):
        super().__init__(f"{phase}: loss is {loss} at step {step}; lower the learning rate in the recipe")
        self.phase, self.step, self.loss = phase, step, loss


@dataclasses.dataclass(frozen=True, slots=True)
class PhaseStats:
    """How a phase went: loss at the start and end (means over a few steps), a coarse curve, time."""

    name: str
    steps: int
    first_loss: float
    last_loss: float
    loss_curve: tuple[float, ...]
    wall_s: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def learning_rate(phase: Phase, step: int) -> float:
    """Linear warmup over warmup_steps, then cosine decay from lr to min_lr at the last step."""
    if step < phase.warmup_steps:
        return phase.lr * (step + 1) / phase.warmup_steps
    span = max(phase.steps - 1 - phase.warmup_steps, 1)
    progress = (step - phase.warmup_steps) / span
    return phase.min_lr + 0.5 * (phase.lr - phase.min_lr) * (1 + math.cos(math.pi * progress))


def _optimizer(params: list[nn.Parameter], phase: Phase) -> torch.optim.AdamW:
    # Decay matrices only: decaying norm gains and embeddings' rows of rare tokens only hurts.
    decay = [p for p in params if p.ndim >= 2]
    keep = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": phase.weight_decay}, {"params": keep, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=phase.lr, betas=(0.9, 0.95), eps=1e-8)


def train(name: str, params: Iterable[nn.Parameter], phase: Phase, batches: Iterator[BatchT],
          loss_fn: Callable[[BatchT], torch.Tensor], bar: PhaseProgress) -> PhaseStats:
    """Run `phase.steps` steps of `loss_fn` over `batches`; parameters are updated in place."""
    params = [p for p in params if p.requires_grad]
    optimizer = _optimizer(params, phase)
    losses: list[float] = []
    start = time.perf_counter()
    for step in range(phase.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(phase, step)
        loss = loss_fn(next(batches))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, phase.grad_clip)
        optimizer.step()
        value = loss.item()  # one sync per step; the bar needs it anyway
        if not math.isfinite(value):
            raise DivergedError(name, step, value)
        losses.append(value)
        bar.advance(loss=value)
    return _stats(name, losses, time.perf_counter() - start)


def _stats(name: str, losses: list[float], wall_s: float) -> PhaseStats:
    window = max(1, min(10, len(losses) // 5))
    chunk = max(1, len(losses) // CURVE_POINTS)
    curve = tuple(round(sum(losses[i : i + chunk]) / len(losses[i : i + chunk]), 5)
                  for i in range(0, len(losses), chunk))
    return PhaseStats(name=name, steps=len(losses), first_loss=sum(losses[:window]) / window,
                      last_loss=sum(losses[-window:]) / window, loss_curve=curve, wall_s=round(wall_s, 2))
