"""Phase 4: the EAGLE head, trained on the frozen policy's hidden states.

Position i of the head reads the pair (policy feature f_i, embedding of x_{i+1}) and predicts
f_{i+1}; the policy's LM head turns the prediction into the distribution of x_{i+2}. The loss
is EAGLE's: smooth-L1 regression onto the real next feature plus the KL of the resulting
distribution to the policy's own. Drafting deeper than one token feeds the head its own
predictions, so we also train `recipe.eagle_unroll - 1` further steps on predicted features
(as EAGLE-3's training-time test does); without that, errors compound from the second draft on.

Shape legend: B sequences, T positions, D policy hidden, V vocab.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rollspec.engine.eagle_head import EagleHead
from rollspec.engine.model import Decoder
from rollspec.models.imitation import imitation_kl
from rollspec.models.init import init_weights
from rollspec.models.progress import ProgressReporter
from rollspec.models.random_models import eagle_config
from rollspec.models.recipe import Recipe, derive_seed
from rollspec.models.teacher import TeacherBatch, TeacherData
from rollspec.models.trainer import PhaseStats, train

PHASE = "eagle head"


def eagle_loss(head: EagleHead, policy: Decoder, batch: TeacherBatch, *, unroll: int,
               feature_weight: float) -> torch.Tensor:
    """Mean over unroll steps of (feature_weight * smooth-L1 + KL) at response positions."""
    T = batch.tokens_BT.shape[1]
    embeds_BTD = policy.embed_tokens(batch.tokens_BT)
    features_BTD = batch.hidden_BTD[:, :-1]  # step s reads features for pairs s .. T-2
    total = torch.zeros(())
    for step in range(min(unroll, T - 1)):
        shift = step + 1
        positions_BT = torch.arange(step, T - 1)[None]
        predicted_BTD = head(embeds_BTD[:, shift:], features_BTD, positions_BT=positions_BT)
        trained_BT = batch.trained_BT[:, shift:]
        predicted_ND = predicted_BTD[trained_BT]
        feature_loss = F.smooth_l1_loss(predicted_ND, batch.hidden_BTD[:, shift:][trained_BT])
        kl = imitation_kl(batch.logprobs_BTV[:, shift:][trained_BT], policy.logits(predicted_ND))
        total = total + feature_weight * feature_loss + kl
        features_BTD = predicted_BTD[:, :-1]
    return total / min(unroll, T - 1)


def train_eagle(recipe: Recipe, seed: int, policy: Decoder, teacher: TeacherData,
                progress: ProgressReporter) -> tuple[EagleHead, PhaseStats]:
    """A freshly initialized EAGLE head trained to imitate the frozen `policy`."""
    head = EagleHead(eagle_config(policy.config))
    init_weights(head, seed=derive_seed(seed, "eagle-init"), num_layers=1)
    head.train()
    batches = teacher.stream(derive_seed(seed, "eagle-order"))

    def loss_fn(batch: TeacherBatch) -> torch.Tensor:
        return eagle_loss(head, policy, batch, unroll=recipe.eagle_unroll, feature_weight=recipe.eagle_feature_weight)

    with progress.phase(PHASE, recipe.eagle.steps) as bar:
        stats = train(PHASE, head.parameters(), recipe.eagle, batches, loss_fn, bar)
    return head.eval().requires_grad_(False), stats
