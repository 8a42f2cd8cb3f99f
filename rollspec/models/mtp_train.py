"""Phase 5: the MTP heads, trained on the frozen policy's hidden states.

Depth j reads the previous depth's state (depth 0: the policy's hidden state h_t) and the
embedding of x_{t+j+1}, and predicts x_{t+j+2}, whose target is the policy's own distribution
at position t+j+1. Heads are chained exactly as the MTP drafter chains them, depths past the
last head reusing it, so the last head also learns to run recurrently for k > num_mtp_layers.

Shape legend: B sequences, T positions, N chains (flattened start positions), D policy hidden, V vocab.
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
    """Mean over depths 0 .. depth-1 of the KL to the policy, for chains starting at response positions.

    MTP heads have no attention, so chains are independent: only those the drafter can start
    (from <sep> on, where the next token is a response token) are computed, as flat rows.
    """
    T = batch.tokens_BT.shape[1]
    rows_N, starts_N = batch.trained_BT.nonzero(as_tuple=True)
    state_ND = batch.hidden_BTD[rows_N, starts_N]
    total = torch.zeros(())
    for j in range(depth):
        positions_N = starts_N + j + 1  # the token fed at depth j, and where its target distribution sits
        inside_N = positions_N < T
        positions_N = positions_N.clamp(max=T - 1)
        state_ND, normed_ND = heads.head(j)(state_ND, policy.embed_tokens(batch.tokens_BT[rows_N, positions_N]))
        trained_N = inside_N & batch.trained_BT[rows_N, positions_N]
        if not bool(trained_N.any()):
            break
        total = total + imitation_kl(batch.logprobs_BTV[rows_N, positions_N][trained_N],
                                     policy.logits(normed_ND[trained_N]))
    return total / depth


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
