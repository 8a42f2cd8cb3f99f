"""The one-call decoder layer (engine/kernels/layer.c, engine/fused_layer.py) computes what the
torch path of cached_forward.layer_forward computes: hidden states and the KV-cache rows it
writes, for prefill, decode, verify and ragged batches, rows past the first, layers without an
input norm or q/k norms (EAGLE's), grouped-query heads; and layers it does not take (biases)
stay on torch."""

import pytest
import torch

from rollspec.engine import cpu_kernels, fused_layer
from rollspec.engine.cached_forward import fold
from rollspec.engine.kv_cache import AttentionBatch
from rollspec.models.random_models import random_decoder, random_eagle_head, tiny_config

needs_kernel = pytest.mark.skipif(not cpu_kernels.enabled(), reason="CPU kernels do not load here")
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def kernel_on():
    cpu_kernels.set_enabled(True)
    yield
    cpu_kernels.set_enabled(True)


def _steps(model, steps, *, kernels: bool, num_slots: int = 4):
    """Runs `steps` ((row_start, cache_lens, ids_BT), ...) through the model over one cache;
    returns every step's hidden states and the cache."""
    cpu_kernels.set_enabled(kernels)
    cache = model.new_cache(num_slots=num_slots, max_len=40)
    outputs = []
    with torch.inference_mode():
        for row_start, lens, ids_BT in steps:
            batch = AttentionBatch.build(row_start=row_start, cache_lens=lens, num_tokens=ids_BT.shape[1], max_len=40,
                                         device=CPU, dtype=torch.float32)
            outputs.append(model(ids_BT, cache=cache, batch=batch))
    return outputs, cache.kv_NSCME.clone()


def _compare(model, steps):
    fused, fused_cache = _steps(model, steps, kernels=True)
    torch_path, torch_cache = _steps(model, steps, kernels=False)
    for got, expected in zip(fused, torch_path):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fused_cache, torch_cache, rtol=1e-4, atol=1e-4)


def _ids(seed, *shape):
    return torch.randint(0, 40, shape, generator=torch.Generator().manual_seed(seed))


@needs_kernel
@pytest.mark.parametrize("overrides", [{}, {"num_heads": 3, "num_kv_heads": 1, "head_dim": 64, "hidden_size": 96},
                                       {"qk_norm": False, "num_kv_heads": 4}])
def test_prefill_decode_verify_and_ragged_steps_match_the_torch_path(overrides):
    model = random_decoder(tiny_config(vocab_size=40, **overrides), seed=1, std=0.3)
    steps = [(0, [0, 0], _ids(1, 2, 6)),           # prefill of two rows
             (2, [0], _ids(2, 1, 9)),              # a third row admitted at row 2
             (0, [6, 6, 9], _ids(3, 3, 1)),        # ragged decode (masked)
             (0, [7, 7, 10], _ids(4, 3, 5)),       # verify of 5 tokens per row
             (0, [12], _ids(5, 1, 1))]             # batch-1 decode (no mask)
    _compare(model, steps)


@needs_kernel
def test_a_layer_without_input_norm_matches_the_torch_path():
    cfg = tiny_config(vocab_size=40)
    head = random_eagle_head(cfg, seed=2, std=0.3)
    layer = head.layers[0]
    assert not fold(layer).has_input_norm
    generator = torch.Generator().manual_seed(2)
    x_ND = torch.randn(6, cfg.hidden_size, generator=generator)

    def run(kernels):
        cpu_kernels.set_enabled(kernels)
        cache = head.new_cache(num_slots=2, max_len=40)
        batch = AttentionBatch.build(row_start=0, cache_lens=[0, 2], num_tokens=3, max_len=40, device=CPU,
                                     dtype=torch.float32)
        from rollspec.engine.cached_forward import LayerInputs, layer_forward

        with torch.inference_mode():
            out = layer_forward(layer, x_ND, LayerInputs(head.rotary, cache, batch, torch.float32), 0, 2, 3)
        return out, cache.kv_NSCME

    fused, fused_cache = run(True)
    expected, expected_cache = run(False)
    torch.testing.assert_close(fused, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fused_cache, expected_cache, rtol=1e-4, atol=1e-4)


@needs_kernel
def test_the_input_is_left_as_it_was_and_biased_layers_stay_on_torch():
    model = random_decoder(tiny_config(vocab_size=40), seed=3, std=0.3)
    w = fold(model.layers[0])
    x_ND = torch.randn(1, 64)
    batch = AttentionBatch.build(row_start=0, cache_lens=[0], num_tokens=1, max_len=40, device=CPU, dtype=torch.float32)
    cache = model.new_cache(num_slots=1, max_len=40)
    cos = torch.ones(40, 16)
    assert fused_layer.fits(w, x_ND, cos, cache.layers_SCME[0], batch)
    before = x_ND.clone()
    fused_layer.run(w, x_ND, cos, torch.zeros(40, 16), cache.layers_SCME[0], batch, 1, 1)
    assert torch.equal(x_ND, before)
    biased = random_decoder(tiny_config(vocab_size=40, qkv_bias=True, o_bias=True), seed=3, std=0.3)
    assert not fused_layer.fits(fold(biased.layers[0]), x_ND, cos, cache.layers_SCME[0], batch)
    # A rotary table shorter than the cache could be read past its end: torch's gather raises instead.
    assert not fused_layer.fits(w, x_ND, cos[:39], cache.layers_SCME[0], batch)


@needs_kernel
def test_a_verify_forward_reproduces_decode_steps_bit_for_bit():
    """Every part of the kernel path computes a token's row the same way whatever else is in the
    call, so one 5-token forward equals five 1-token forwards to the last bit, and a row's logits do
    not depend on the rows beside it (torch's path differs in the last bits on both counts)."""
    model = random_decoder(tiny_config(vocab_size=40), seed=3, std=0.3)
    ids = _ids(3, 3, 9)

    def batch(row_start, lens, num_tokens):
        return AttentionBatch.build(row_start=row_start, cache_lens=lens, num_tokens=num_tokens, max_len=40,
                                    device=CPU, dtype=torch.float32)

    with torch.inference_mode():
        stepwise, together = model.new_cache(num_slots=3, max_len=40), model.new_cache(num_slots=3, max_len=40)
        model(ids[:1, :4], cache=stepwise, batch=batch(0, [0], 4))
        model(ids[:, :4], cache=together, batch=batch(0, [0, 0, 0], 4))
        steps = [model.cached_logits(model(ids[:1, t:t + 1], cache=stepwise, batch=batch(0, [t], 1)))
                 for t in range(4, 9)]
        verify = model.cached_logits(model(ids[:, 4:9], cache=together, batch=batch(0, [4, 4, 4], 5)))
    assert torch.equal(torch.cat(steps, dim=1), verify[:1])


@needs_kernel
def test_the_packed_weights_follow_in_place_updates():
    """Weight sync copies new weights into the live parameters (load_native): the kernels' packed
    copies must be rebuilt, so the updated model computes what a fresh one with those weights does."""
    from rollspec.engine.weights import load_native

    live = random_decoder(tiny_config(vocab_size=40), seed=4, std=0.3)
    fresh = random_decoder(tiny_config(vocab_size=40), seed=5, std=0.3)
    ids = _ids(6, 2, 6)
    before, _ = _steps(live, [(0, [0, 0], ids)], kernels=True)
    load_native(live, {name: t.clone() for name, t in fresh.state_dict().items()})
    after, _ = _steps(live, [(0, [0, 0], ids)], kernels=True)
    expected, _ = _steps(fresh, [(0, [0, 0], ids)], kernels=True)
    assert not torch.equal(before[0], expected[0])
    assert torch.equal(after[0], expected[0])
