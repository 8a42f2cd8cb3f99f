"""Phase 5: the MTP heads, trained on the frozen policy's hidden states.

Depth j reads the previous depth's state (depth 0: the policy's hidden state h_t) and the
embedding of x_{t+j+1}, and predicts x_{t+j+2}, whose target is the policy's own distribution
at position t+j+1. Heads are chained exactly as the MTP drafter chains them, depths past the
last head reusing it, so the last head also learns to run recurrently for k > num_mtp_layers.

Shape legend: B sequences, T positions, D policy hidden, V vocab.
"""

from __future__ import annotations

import dataclasses

import torch

from rollspec.engine.model import Decoder
from rollspec.engine.mtp_head import MTPHeads
from rollspec.models.imitation import imitation_kl
from rollspec.models.init import init_weights
from rollspec.models.progress import ProgressReporter
from rollspec.models.recipe import Recipe, derive_seed
from rollspec.models.teacher import TeacherBatch, TeacherData
from rollspec.models.trainer import PhaseStats, train

PHASE = "mtp heads"


def mtp_loss(heads: MTPHeads, policy: Decoder, batch: TeacherBatch, *, depth: int) -> torch.Tensor:
    """Mean over depths 0 .. depth-1 of the KL to the policy at response positions."""
    T = batch.tokens_BT.shape[1]
    embeds_BTD = policy.embed_tokens(batch.tokens_BT)
    state_BTD = batch.hidden_BTD[:, :-1]  # depth j holds states for t = 0 .. T-j-2
    total = torch.zeros(())
    for j in range(min(depth, T - 1)):
        shift = j + 1
        state_BTD, normed_BTD = heads.head(j)(state_BTD, embeds_BTD[:, shift:])
        trained_BT = batch.trained_BT[:, shift:]
        total = total + imitation_kl(batch.logprobs_BTV[:, shift:][trained_BT], policy.logits(normed_BTD[trained_BT]))
        state_BTD = state_BTD[:, :-1]
    return total / min(depth, T - 1)


def train_mtp(recipe: Recipe, seed: int, policy: Decoder, teacher: TeacherData,
              progress: ProgressReporter) -> tuple[MTPHeads, PhaseStats]:
    """Freshly initialized MTP heads trained to imitate the frozen `policy`."""
    heads = MTPHeads(dataclasses.replace(policy.config, num_mtp_layers=recipe.num_mtp_layers))
    init_weights(heads, seed=derive_seed(seed, "mtp-init"), num_layers=1)
    heads.train()
    batches = teacher.stream(derive_seed(seed, "mtp-order"))

    def loss_fn(batch: TeacherBatch) -> torch.Tensor:
        return mtp_loss(heads, policy, batch, depth=recipe.mtp_depth)

    with progress.phase(PHASE, recipe.mtp.steps) as bar:
        stats = train(PHASE, heads.parameters(), recipe.mtp, batches, loss_fn, bar)
    return heads.eval().requires_grad_(False), stats
