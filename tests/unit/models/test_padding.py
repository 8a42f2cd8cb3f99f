"""A padded policy computes the original's logits exactly, has the extra layers (so it costs more),
and bad requests are refused."""

import pytest
import torch

from rollspec.engine.kv_cache import AttentionBatch
from rollspec.engine.loader import load_model
from rollspec.models.hf_dir import write_model_dir
from rollspec.models.padding import pad_policy
from rollspec.models.random_models import random_decoder, tiny_config


@pytest.fixture
def policy_dir(tmp_path):
    model = random_decoder(tiny_config(vocab_size=40), seed=1, std=0.3)
    return write_model_dir(tmp_path / "policy", model)


def test_the_padded_policy_has_the_same_logits_and_more_layers(policy_dir, tmp_path):
    padded = pad_policy(policy_dir, tmp_path / "padded", extra_layers=3)
    original, bigger = load_model(policy_dir).model, load_model(padded).model
    assert len(bigger.layers) == len(original.layers) + 3
    assert sum(p.numel() for p in bigger.parameters()) > sum(p.numel() for p in original.parameters())
    ids = torch.randint(0, 40, (2, 7), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        assert torch.equal(original.logits(original(ids)), bigger.logits(bigger(ids)))
        caches = [m.new_cache(num_slots=2, max_len=16) for m in (original, bigger)]
        batch = AttentionBatch.build(row_start=0, cache_lens=[0, 0], num_tokens=7, max_len=16,
                                     device=torch.device("cpu"), dtype=torch.float32)
        cached = [m.cached_logits(m(ids, cache=c, batch=batch)) for m, c in zip((original, bigger), caches)]
    torch.testing.assert_close(cached[0], cached[1], rtol=0, atol=1e-6)


def test_padding_with_nothing_is_refused(policy_dir, tmp_path):
    with pytest.raises(ValueError, match="extra_layers"):
        pad_policy(policy_dir, tmp_path / "padded", extra_layers=0)
