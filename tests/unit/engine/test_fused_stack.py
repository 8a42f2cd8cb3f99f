"""A decoder's whole cached forward as one C call (engine/fused_stack.py) computes exactly what
the per-layer kernel path computes, hidden states and cache rows to the last bit, for prefill,
decode, verify and ragged batches; models it does not take fall back to the per-layer path."""

import pytest
import torch

from rollspec.engine import cpu_kernels, fused_stack
from rollspec.engine.kv_cache import AttentionBatch
from rollspec.models.random_models import random_decoder, tiny_config

pytestmark = pytest.mark.skipif(not cpu_kernels.enabled(), reason="CPU kernels do not load here")
CPU = torch.device("cpu")
STEPS = [(0, [0, 0], (1, 2, 6)),   # prefill of two rows
         (2, [0], (2, 1, 9)),      # a third row admitted at row 2
         (0, [6, 6, 9], (3, 3, 1)),  # decode over ragged rows
         (0, [7, 7, 10], (4, 3, 5)),  # verify of 5 tokens per row
         (0, [12], (5, 1, 1))]     # batch-1 decode (no mask)


def _run(model, *, stack: bool, monkeypatch) -> tuple[list[torch.Tensor], torch.Tensor, int]:
    calls = []
    real = fused_stack.forward
    monkeypatch.setattr(fused_stack, "forward", lambda *args: calls.append(1) or real(*args) if stack else None)
    cache = model.new_cache(num_slots=4, max_len=40)
    outputs = []
    with torch.inference_mode():
        for row_start, lens, (seed, B, T) in STEPS:
            ids_BT = torch.randint(0, 40, (B, T), generator=torch.Generator().manual_seed(seed))
            batch = AttentionBatch.build(row_start=row_start, cache_lens=lens, num_tokens=T, max_len=40, device=CPU,
                                         dtype=torch.float32)
            outputs.append(model(ids_BT, cache=cache, batch=batch))
    return outputs, cache.kv_NSCME.clone(), len(calls)


@pytest.mark.parametrize("overrides", [{}, {"num_heads": 3, "num_kv_heads": 1, "head_dim": 64, "hidden_size": 96},
                                       {"qk_norm": False, "num_kv_heads": 4, "num_layers": 3}])
def test_the_one_call_forward_is_the_per_layer_path_bit_for_bit(overrides, monkeypatch):
    model = random_decoder(tiny_config(vocab_size=40, **overrides), seed=1, std=0.3)
    got, got_cache, calls = _run(model, stack=True, monkeypatch=monkeypatch)
    expected, expected_cache, _ = _run(model, stack=False, monkeypatch=monkeypatch)
    assert calls == len(STEPS)
    for a, b in zip(got, expected):
        assert torch.equal(a, b)
    assert torch.equal(got_cache, expected_cache)


def test_biased_layers_take_the_per_layer_path():
    model = random_decoder(tiny_config(vocab_size=40, qkv_bias=True), seed=2, std=0.3)
    cache = model.new_cache(num_slots=1, max_len=40)
    batch = AttentionBatch.build(row_start=0, cache_lens=[0], num_tokens=3, max_len=40, device=CPU, dtype=torch.float32)
    with torch.inference_mode():
        assert fused_stack.forward(model, torch.zeros(1, 3, dtype=torch.long), cache, batch) is None
        assert model(torch.zeros(1, 3, dtype=torch.long), cache=cache, batch=batch).shape == (1, 3, 64)


def test_a_token_id_outside_the_vocabulary_raises_as_torch_does():
    model = random_decoder(tiny_config(vocab_size=40), seed=3, std=0.3)
    cache = model.new_cache(num_slots=1, max_len=40)
    batch = AttentionBatch.build(row_start=0, cache_lens=[0], num_tokens=2, max_len=40, device=CPU, dtype=torch.float32)
    with torch.inference_mode(), pytest.raises(IndexError):
        fused_stack.forward(model, torch.tensor([[3, 40]]), cache, batch)


def test_the_one_call_forward_follows_in_place_weight_updates_over_the_same_cache():
    """The bound arguments (fused_stack.Bound) are reused across calls: weights copied in place
    (load_native, the way updates arrive) must be read, not the addresses or values of before."""
    from rollspec.engine.weights import load_native

    model = random_decoder(tiny_config(vocab_size=40), seed=4, std=0.3)
    cache = model.new_cache(num_slots=2, max_len=40)
    ids_BT = torch.randint(0, 40, (1, 6), generator=torch.Generator().manual_seed(5))
    outputs = []
    for row, seed in ((0, None), (1, 6)):
        if seed is not None:
            generator = torch.Generator().manual_seed(seed)
            load_native(model, {name: (1.0 if name.endswith("norm.weight") else 0.0) + 0.3 * torch.randn(
                t.shape, generator=generator) for name, t in model.state_dict().items()})
        batch = AttentionBatch.build(row_start=row, cache_lens=[0], num_tokens=6, max_len=40, device=CPU,
                                     dtype=torch.float32)
        with torch.inference_mode():
            got = fused_stack.forward(model, ids_BT, cache, batch)
        with torch.no_grad():
            expected = model(ids_BT)  # the training path: final-norm hidden states
        assert got is not None
        torch.testing.assert_close(got.view(1, 6, -1), expected, atol=1e-4, rtol=1e-4)
        outputs.append(got)
    assert not torch.allclose(outputs[0], outputs[1])
