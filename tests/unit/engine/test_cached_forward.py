"""The generation-time forwards (folded norm weights, cached [in, out] weight copies, vocabulary
tables) equal the training-path modules (in float64, where only the order of operations differs),
keep doing so after weights change in place, and run in bfloat16."""

import pytest
import torch

from rollspec.engine.kv_cache import AttentionBatch
from rollspec.engine.weights import load_native
from rollspec.models.random_models import random_decoder, random_eagle_head, random_mtp_heads, tiny_config

CFG = tiny_config(vocab_size=40)


def _batch(num_rows, num_tokens, max_len=32, dtype=torch.float32):
    return AttentionBatch.build(row_start=0, cache_lens=[0] * num_rows, num_tokens=num_tokens, max_len=max_len,
                                device=torch.device("cpu"), dtype=dtype)


def _cached_logits(model, ids):
    cache = model.new_cache(num_slots=ids.shape[0], max_len=32)
    with torch.inference_mode():
        batch = _batch(*ids.shape, dtype=model.embed_tokens.weight.dtype)
        return model.cached_logits(model(ids, cache=cache, batch=batch))


def _reseed(module, seed):
    """New random weights copied in place, the way weight updates arrive (load_native)."""
    generator = torch.Generator().manual_seed(seed)

    def draw(name, t):
        noise = torch.randn(t.shape, generator=generator, dtype=t.dtype)
        return 1.0 + 0.1 * noise if name.endswith("norm.weight") else 0.3 * noise

    load_native(module, {name: draw(name, t) for name, t in module.state_dict().items()})


@pytest.mark.parametrize("overrides", [{}, {"qk_norm": False, "qkv_bias": True, "o_bias": True}])
def test_cached_decoder_follows_in_place_weight_updates(overrides):
    model = random_decoder(tiny_config(vocab_size=40, **overrides), seed=0, std=0.3).double()
    ids = torch.randint(0, 40, (2, 7), generator=torch.Generator().manual_seed(1))
    for seed in (None, 5):  # the second pass must not reuse folded weights built from the first
        if seed is not None:
            _reseed(model, seed)
        with torch.no_grad():
            expected = model.logits(model(ids))
        torch.testing.assert_close(_cached_logits(model, ids), expected, atol=1e-10, rtol=1e-10)


def test_cached_eagle_head_equals_its_module_forward_before_and_after_an_update():
    policy = random_decoder(CFG, seed=0, std=0.3).double()
    head = random_eagle_head(CFG, seed=2, std=0.3).double()
    tokens = torch.randint(0, 40, (2, 6), generator=torch.Generator().manual_seed(3))
    features = torch.randn(2, 6, CFG.hidden_size, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for seed in (None, 6):
        if seed is not None:
            _reseed(head, seed)
        with torch.no_grad():
            expected = head(policy.embed_tokens(tokens), features)
        cache = head.new_cache(num_slots=2, max_len=32)
        with torch.inference_mode():
            got = head.forward_cached(tokens, features, policy.embed_tokens, cache=cache,
                                      batch=_batch(2, 6, dtype=torch.float64))
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)


def test_cached_mtp_head_equals_its_module_forward_before_and_after_an_update():
    policy = random_decoder(CFG, seed=0, std=0.3).double()
    heads = random_mtp_heads(CFG, num_layers=1, seed=3, std=0.3).double()
    tokens = torch.randint(0, 40, (3, 1), generator=torch.Generator().manual_seed(5))
    state = torch.randn(3, 1, CFG.hidden_size, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    for seed in (None, 7):
        if seed is not None:
            _reseed(heads, seed)
        with torch.no_grad():
            expected = heads.head(0)(state, policy.embed_tokens(tokens))
        with torch.inference_mode():
            got = heads.head(0).forward_cached(state, tokens, policy.embed_tokens)
        for g, e in zip(got, expected):
            torch.testing.assert_close(g, e, atol=1e-10, rtol=1e-10)


def test_cached_decoder_runs_in_bfloat16():
    model = random_decoder(CFG, seed=0, std=0.3)
    ids = torch.randint(0, 40, (2, 7), generator=torch.Generator().manual_seed(1))
    expected = _cached_logits(model, ids)
    got = _cached_logits(model.to(torch.bfloat16), ids)
    assert got.dtype == torch.bfloat16
    # bfloat16 keeps ~3 significant digits through two layers: compare against the logits' scale.
    assert (got.float() - expected).abs().max() < 0.05 * expected.abs().max()
