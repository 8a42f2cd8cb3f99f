"""Phase 3: the draft model, a small separate decoder distilled from the frozen policy.

It reads the same tokens as the policy (prompt included) and is trained to match the policy's
next-token distribution at every response position of the teacher data.

Shape legend: B sequences, T positions, V vocab.
"""

from __future__ import annotations

import torch

from rollspec.engine.model import Decoder
from rollspec.models.imitation import imitation_kl
from rollspec.models.init import init_weights
from rollspec.models.progress import ProgressReporter
from rollspec.models.recipe import Recipe, derive_seed
from rollspec.models.teacher import TeacherBatch, TeacherData
from rollspec.models.trainer import PhaseStats, train

PHASE = "draft distill"


def draft_loss(draft: Decoder, batch: TeacherBatch) -> torch.Tensor:
    """Mean KL from the policy to the draft at the batch's response positions."""
    logits_BTV = draft.logits(draft(batch.tokens_BT))
    return imitation_kl(batch.logprobs_BTV[batch.trained_BT], logits_BTV[batch.trained_BT])


def train_draft(recipe: Recipe, seed: int, teacher: TeacherData,
                progress: ProgressReporter) -> tuple[Decoder, PhaseStats]:
    """A freshly initialized draft model after distillation on `teacher`."""
    draft = Decoder(recipe.draft.config())
    init_weights(draft, seed=derive_seed(seed, "draft-init"), num_layers=recipe.draft.num_layers)
    draft.train()
    batches = teacher.stream(derive_seed(seed, "draft-order"))
    with progress.phase(PHASE, recipe.draft_distill.steps) as bar:
        stats = train(PHASE, draft.parameters(), recipe.draft_distill, batches, lambda b: draft_loss(draft, b), bar)
    return draft.eval().requires_grad_(False), stats
