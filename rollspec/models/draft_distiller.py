"""Continual distillation of a drafter to a moving policy: the draft-refresh actor's core.

It holds its own copy of the policy (swapped to every version it is given) and the drafter being
refreshed, and trains the drafter on recent trajectories with the same losses the zoo trains it with
(distill.draft_loss, eagle_train.eagle_loss, mtp_train.mtp_loss): the policy's next-token
distributions and hidden states are computed here, from these weights, so trajectories carry only
token ids. Weights go in and out under the names `Drafter.update` takes: Hugging Face names for the
draft model, `fc.weight` / `layers.0.*` for the EAGLE head, `mtp.{i}.*` for the MTP heads.

Each refresh holds out the newest `batch_size` trajectories (sampled by the newest policies, not
yet trained on) as its probe: the drafter's KL to the current policy there, before and after
training, says how stale the draft was and whether training helped. A refresh that makes the probe
KL worse (it fit noise in a small buffer), or whose loss turns non-finite, restores the drafter's
last good weights and raises RefreshFailedError; nothing worse than the last good draft leaves here.
The probe is trained on by the next refresh.

Shape legend: B sequences, T positions.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import random
import threading
import time
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from rollspec.engine.eagle_head import EagleHead
from rollspec.engine.loader import EXTRA_PREFIXES
from rollspec.engine.model import Decoder
from rollspec.engine.model_config import ModelConfig
from rollspec.engine.mtp_head import MTPHeads
from rollspec.engine.weights import hf_to_native, load_native, native_to_hf
from rollspec.models.config import RefreshConfig
from rollspec.models.distill import draft_loss
from rollspec.models.distiller_state import DistillerStateError, TrainerState, load_optimizer_tensors, optimizer_tensors
from rollspec.models.eagle_train import eagle_loss
from rollspec.models.mtp_train import mtp_loss
from rollspec.models.teacher import TeacherBatch, teach
from rollspec.models.token_batch import TokenSequence, collate

Weights = dict[str, torch.Tensor]
DRAFTER_KINDS = ("draft_model", "eagle", "mtp")


class RefreshFailedError(RuntimeError):
    """A refresh diverged or did not improve the held-out KL; the drafter is back at its last good weights."""


@dataclasses.dataclass(frozen=True, slots=True)
class RefreshResult:
    """New drafter weights and how the refresh went. The KLs are measured on the held-out newest
    trajectories against the current policy, before and after training."""

    weights: Weights
    num_steps: int
    kl_before: float
    kl_after: float
    wall_s: float
    stopped_by_budget: bool
    trainer: TrainerState | None = None
    """The optimizer and RNG state these weights were reached with: what a checkpoint of them saves."""


class DraftDistiller:
    """Keeps `kind`'s drafter distilled to the latest policy given to `set_policy`."""

    def __init__(self, kind: str, *, policy_config: ModelConfig, policy_weights: Weights, draft_weights: Weights,
                 config: RefreshConfig, draft_config: ModelConfig | None = None):
        """`policy_weights` under Hugging Face names (extra `mtp.*` tensors are ignored); `draft_config`
        is the draft model's or EAGLE head's config (unused for MTP, whose heads follow the policy's)."""
        if kind not in DRAFTER_KINDS:
            raise ValueError(f"drafter {kind!r} has no weights to distill; expected one of {DRAFTER_KINDS}")
        if kind != "mtp" and draft_config is None:
            raise ValueError(f"drafter {kind!r} needs its draft_config")
        self.kind, self.config = kind, config
        self.policy = Decoder(policy_config).eval().requires_grad_(False)
        self.set_policy(policy_weights)
        self.drafter = _new_drafter(kind, policy_config, draft_config)
        _load_drafter(kind, self.drafter, draft_weights)
        self._optimizer = self._new_optimizer()
        self._buffer: collections.deque[TokenSequence] = collections.deque(maxlen=config.buffer_sequences)
        # The buffer is read by a checkpoint on another thread while the refresh loop adds to it.
        self._buffer_lock = threading.Lock()
        self._rng = random.Random(config.seed)

    @property
    def num_sequences(self) -> int:
        """Trajectories held to train on."""
        return len(self._buffer)

    def set_policy(self, weights_hf: Weights) -> None:
        """Swap this copy of the policy to new weights (validated; nothing changes on error)."""
        decoder = {n: t for n, t in weights_hf.items() if not n.startswith(EXTRA_PREFIXES)}
        load_native(self.policy, hf_to_native(decoder, self.policy.config))

    def add_sequences(self, sequences: Iterable[TokenSequence]) -> None:
        """Keep trajectories to train on; the oldest drop out past `buffer_sequences`."""
        kept = [s for s in sequences if len(s.token_ids) > s.prompt_len]
        with self._buffer_lock:
            self._buffer.extend(kept)

    def buffered(self) -> tuple[TokenSequence, ...]:
        """The trajectories held to train on, oldest first (safe to call from another thread)."""
        with self._buffer_lock:
            return tuple(self._buffer)

    def trainer_state(self) -> TrainerState:
        """Copies of the optimizer's moments and the RNG state as they stand now (call it on the refreshing thread)."""
        return TrainerState(optimizer_tensors(self._optimizer, self._trained_params()), self._rng.getstate())

    def restore_state(self, trainer: TrainerState | None, buffer: Sequence[TokenSequence]) -> None:
        """Continue from a checkpoint: its optimizer moments and RNG (None: keep fresh ones) and its buffered
        trajectories (the newest `buffer_sequences` of them). DistillerStateError, changing nothing, if
        the moments do not fit this drafter or a trajectory holds a token the policy does not have."""
        vocab_size = self.policy.config.vocab_size
        if any(t >= vocab_size for s in buffer for t in s.token_ids):
            raise DistillerStateError(f"a buffered trajectory holds a token id >= the policy's vocab_size {vocab_size}")
        if trainer is not None:
            optimizer = self._new_optimizer()
            load_optimizer_tensors(optimizer, self._trained_params(), trainer.optimizer)
            self._rng.setstate(trainer.rng_state)
            self._optimizer = optimizer
        with self._buffer_lock:
            self._buffer.clear()
            self._buffer.extend(buffer)

    def weights(self) -> Weights:
        """The drafter's current weights, as copies, under the names its `Drafter.update` takes."""
        return _export_drafter(self.kind, self.drafter)

    def refresh(self) -> RefreshResult | None:
        """Train on the buffer for up to `steps` steps or `max_seconds`; None if too few trajectories."""
        cfg = self.config
        buffer = self.buffered()
        if len(buffer) < cfg.min_sequences:
            return None
        start = time.perf_counter()
        held_out = min(cfg.batch_size, len(buffer) // 2)
        train_pool = list(buffer[: len(buffer) - held_out])
        probe = teach(self.policy, collate(list(buffer[-held_out:])))
        kl_before = self._probe_loss(probe)
        last_good = {name: t.clone() for name, t in self.drafter.state_dict().items()}
        params = [p for p in self.drafter.parameters() if p.requires_grad]
        num_steps, stopped_by_budget = 0, False
        self.drafter.train()
        for num_steps in range(1, cfg.steps + 1):
            batch = collate(self._rng.sample(train_pool, min(cfg.batch_size, len(train_pool))))
            loss = self._loss(teach(self.policy, batch))
            if not math.isfinite(loss.item()):
                self._restore(last_good)
                raise RefreshFailedError(f"{self.kind} refresh: loss {loss.item()} at step {num_steps}")
            self._optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            self._optimizer.step()
            if time.perf_counter() - start > cfg.max_seconds:
                stopped_by_budget = num_steps < cfg.steps
                break
        self.drafter.eval()
        kl_after = self._probe_loss(probe)
        if not kl_after <= kl_before:  # also catches NaN
            self._restore(last_good)
            raise RefreshFailedError(f"{self.kind} refresh: held-out KL {kl_before:.4f} -> {kl_after:.4f} after "
                                     f"{num_steps} steps; kept the last good draft")
        return RefreshResult(self.weights(), num_steps, kl_before, kl_after, time.perf_counter() - start,
                             stopped_by_budget, self.trainer_state())

    # ------------------------------------------------------------------------------ internals
    def _loss(self, batch: TeacherBatch) -> torch.Tensor:
        if self.kind == "draft_model":
            return draft_loss(self.drafter, batch)
        if self.kind == "eagle":
            return eagle_loss(self.drafter, self.policy, batch, unroll=self.config.eagle_unroll,
                              feature_weight=self.config.eagle_feature_weight)
        return mtp_loss(self.drafter, self.policy, batch, depth=self.config.mtp_depth)

    @torch.no_grad()
    def _probe_loss(self, probe: TeacherBatch) -> float:
        return float(self._loss(probe))

    def _trained_params(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.drafter.named_parameters() if p.requires_grad]

    def _new_optimizer(self) -> torch.optim.AdamW:
        params = [p for _, p in self._trained_params()]
        return torch.optim.AdamW(params, lr=self.config.lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)

    def _restore(self, state: Weights) -> None:
        self.drafter.load_state_dict(state)
        self.drafter.eval()
        self._optimizer = self._new_optimizer()  # its moments were built by the steps that went wrong


def _new_drafter(kind: str, policy_config: ModelConfig, draft_config: ModelConfig | None) -> nn.Module:
    if kind == "draft_model":
        return Decoder(draft_config)
    if kind == "eagle":
        return EagleHead(draft_config)
    return MTPHeads(policy_config)


def _load_drafter(kind: str, module: nn.Module, weights: Weights) -> None:
    if kind == "draft_model":
        load_native(module, hf_to_native(weights, module.config))
    elif kind == "eagle":
        load_native(module, hf_to_native({f"model.{n}": t for n, t in weights.items()}, module.config))
    else:
        module.load_checkpoint_weights(weights)


def _export_drafter(kind: str, module: nn.Module) -> Weights:
    if kind == "draft_model":
        named = native_to_hf(module)
    elif kind == "eagle":
        named = {n.removeprefix("model."): t for n, t in native_to_hf(module).items()}
    else:
        named = module.checkpoint_weights()
    return {name: t.detach().contiguous().clone() for name, t in named.items()}
