"""Recipe validation and hashing, the learning-rate schedule, seeds and training batches."""

import dataclasses

import pytest

from rollspec.models.recipe import Phase, RecipeError, derive_seed, full_recipe, tiny_recipe
from rollspec.models.token_batch import TokenSequence, collate
from rollspec.models.trainer import learning_rate
from rollspec.rl.vocab import PAD_ID


def test_hash_depends_on_seed_and_every_field():
    recipe = full_recipe()
    assert recipe.hash(0) == full_recipe().hash(0)
    assert recipe.hash(0) != recipe.hash(1)
    assert recipe.hash(0) != dataclasses.replace(recipe, eval_k=recipe.eval_k + 1).hash(0)
    assert recipe.hash(0) != tiny_recipe().hash(0)


def test_full_recipe_uses_head_dim_64_and_long_contexts():
    recipe = full_recipe()
    for size in (recipe.policy, recipe.draft):
        assert size.head_dim == 64 and size.config().max_position_embeddings >= 1024
    assert recipe.policy.config().num_layers > recipe.draft.config().num_layers


@pytest.mark.parametrize("kwargs", [dict(steps=0), dict(min_lr=2e-3), dict(min_lr=0.0), dict(warmup_steps=10)])
def test_bad_phase_is_a_named_error(kwargs):
    fields = dict(steps=10, lr=1e-3, min_lr=1e-4, warmup_steps=2) | kwargs
    with pytest.raises(RecipeError):
        Phase(**fields)


def test_schedule_warms_up_then_decays_to_min_lr():
    phase = Phase(steps=100, lr=1e-3, min_lr=1e-4, warmup_steps=10)
    rates = [learning_rate(phase, step) for step in range(100)]
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(rates[9:], rates[10:]))
    assert rates[-1] == pytest.approx(1e-4)


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed(0, "policy-init") == derive_seed(0, "policy-init")
    assert len({derive_seed(s, p) for s in range(3) for p in ("a", "b")}) == 6


def test_collate_trains_exactly_the_positions_that_predict_the_response():
    batch = collate([TokenSequence((1, 7, 8, 3, 20, 21, 2), prompt_len=4), TokenSequence((1, 9, 3, 22, 2), 3)])
    assert batch.tokens_BT[1].tolist() == [1, 9, 3, 22, 2, PAD_ID, PAD_ID]
    assert batch.trained_BT.tolist() == [[False, False, False, True, True, True, False],
                                         [False, False, True, True, False, False, False]]
