"""The driver's held-out evaluation: same prompts and seeds for every set of weights it scores."""

import pytest
import torch

from rollspec.engine.weights import native_to_hf
from rollspec.launch.heldout import HeldoutEvaluator, HeldoutSpec
from rollspec.models.hf_dir import write_model_dir
from rollspec.models.random_models import random_decoder, tiny_config
from rollspec.rl.tasks import task_names
from rollspec.rl.vocab import EOS_ID, VOCAB_SIZE


@pytest.fixture(scope="module")
def evaluator(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "policy"
    write_model_dir(path, random_decoder(tiny_config(vocab_size=VOCAB_SIZE), seed=0, std=0.05))
    spec = HeldoutSpec(task_weights={name: 1.0 for name in task_names()}, data_seed=0, difficulty=1,
                       eval_fraction=0.05, rl_fraction=0.05, num_prompts=10, samples_per_prompt=2, temperature=1.0, max_new_tokens=12,
                       max_seq_len=96)
    return HeldoutEvaluator(path, spec)


def _weights(evaluator) -> dict[str, torch.Tensor]:
    loaded = evaluator._loaded
    return {k: v.clone() for k, v in native_to_hf(loaded.model).items()}


def test_same_weights_score_the_same(evaluator):
    assert evaluator.initial["num_samples"] == 20
    assert set(evaluator.initial["by_task"]) <= set(task_names())
    assert evaluator.score_weights(_weights(evaluator)) == evaluator.initial


def test_scores_the_weights_it_is_given(evaluator):
    weights = _weights(evaluator)
    original = {k: v.clone() for k, v in weights.items()}
    head = "lm_head.weight" if "lm_head.weight" in weights else "model.embed_tokens.weight"
    weights[head][EOS_ID] += 50.0 * weights[head][EOS_ID].sign()  # EOS now nearly always comes first
    stops_at_once = evaluator.score_weights(weights)
    # A ratio, not a fixed bound: how often EOS wins at temperature 1 depends on the sampling stream.
    assert evaluator.initial["response_tokens_mean"] > 6
    assert stops_at_once["response_tokens_mean"] < evaluator.initial["response_tokens_mean"] / 3
    assert stops_at_once["reward_mean"] == 0.0
    assert evaluator.score_weights(original) == evaluator.initial
