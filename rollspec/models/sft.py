"""Phase 1: the policy, trained from scratch by supervised fine-tuning on the task mixture.

Teacher-forced cross-entropy on response tokens only (see `token_batch`): the policy learns
to answer prompts, never to produce them.

Shape legend: B sequences, T positions, V vocab.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rollspec.engine.model import Decoder
from rollspec.models.init import init_weights
from rollspec.models.progress import ProgressReporter
from rollspec.models.recipe import Recipe, derive_seed
from rollspec.models.token_batch import TokenBatch, reference_batches
from rollspec.models.trainer import PhaseStats, train

PHASE = "policy sft"


def response_loss(model: Decoder, batch: TokenBatch) -> torch.Tensor:
    """Mean cross-entropy of the response tokens given everything before them."""
    logits_BTV = model.logits(model(batch.tokens_BT))
    trained_BT = batch.trained_BT[:, :-1]
    return F.cross_entropy(logits_BTV[:, :-1][trained_BT], batch.tokens_BT[:, 1:][trained_BT])


def train_policy(recipe: Recipe, seed: int, progress: ProgressReporter) -> tuple[Decoder, PhaseStats]:
    """A freshly initialized policy (with `recipe.num_mtp_layers` recorded in its config) after SFT."""
    model = Decoder(recipe.policy.config(num_mtp_layers=recipe.num_mtp_layers))
    init_weights(model, seed=derive_seed(seed, "policy-init"), num_layers=recipe.policy.num_layers)
    model.train()
    batches = reference_batches(recipe.mixture(seed), recipe.sft_batch_size, derive_seed(seed, "sft-order"))
    with progress.phase(PHASE, recipe.sft.steps) as bar:
        stats = train(PHASE, model.parameters(), recipe.sft, batches, lambda b: response_loss(model, b), bar)
    return model.eval().requires_grad_(False), stats
