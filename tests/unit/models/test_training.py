"""Training does something: SFT lowers the loss, and briefly trained drafters are accepted more
often than random ones of the same shape (measured with the engine, greedy)."""

import pytest

from rollspec.engine.drafters.draft_model import DraftModelDrafter
from rollspec.engine.drafters.eagle import EagleDrafter
from rollspec.engine.drafters.mtp import MTPDrafter
from rollspec.engine.loader import load_eagle_head, load_model, load_mtp_heads
from rollspec.models.evaluate import acceptance_prompts, measure_acceptance
from rollspec.models.manifest import read_manifest
from rollspec.models.random_models import random_decoder, random_eagle_head, random_mtp_heads
from rollspec.models.recipe import tiny_recipe

from .conftest import SEED

SLOTS, MAX_LEN = 16, 128


def test_every_phase_lowers_its_loss(tiny_zoo):
    for phase in read_manifest(tiny_zoo.root)["phases"]:
        assert phase["last_loss"] < phase["first_loss"], phase


def _acceptance(policy, drafter):
    recipe = tiny_recipe()
    return measure_acceptance(policy.model, drafter, acceptance_prompts(recipe, SEED), temperature=0.0,
                              k=recipe.eval_k, seed=1, max_new_tokens=recipe.max_new_tokens,
                              batch_size=SLOTS).acceptance_length


@pytest.mark.parametrize("kind", ["draft_model", "eagle", "mtp"])
def test_trained_drafter_beats_a_random_one(tiny_zoo, kind):
    policy = load_model(tiny_zoo.policy)
    cfg = policy.config
    if kind == "draft_model":
        draft = load_model(tiny_zoo.draft).model
        trained = DraftModelDrafter(draft, num_slots=SLOTS, max_len=MAX_LEN)
        untrained = DraftModelDrafter(random_decoder(draft.config, seed=3), num_slots=SLOTS, max_len=MAX_LEN)
    elif kind == "eagle":
        trained = EagleDrafter(load_eagle_head(tiny_zoo.eagle, policy), policy.model, num_slots=SLOTS, max_len=MAX_LEN)
        untrained = EagleDrafter(random_eagle_head(cfg, seed=3), policy.model, num_slots=SLOTS, max_len=MAX_LEN)
    else:
        trained = MTPDrafter(load_mtp_heads(policy), policy.model)
        untrained = MTPDrafter(random_mtp_heads(cfg, num_layers=cfg.num_mtp_layers, seed=3), policy.model)
    assert _acceptance(policy, trained) > _acceptance(policy, untrained) + 0.2
