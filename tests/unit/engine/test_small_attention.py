"""The attention kernel (engine/kernels/attention.c, engine/small_attention.py) equals torch's SDPA
with the engine's mask for decode, verify and drafting batches: ragged rows, several new tokens
per row, grouped-query heads, cache views with the real strides; torch is used for what the
kernel does not take."""

import pytest
import torch
import torch.nn.functional as F

from rollspec.engine import cpu_kernels
from rollspec.engine.kv_cache import AttentionBatch, KVCache
from rollspec.engine.small_attention import attend

needs_kernel = pytest.mark.skipif(not cpu_kernels.enabled(), reason="CPU kernels do not load here")
CPU = torch.device("cpu")


@pytest.fixture
def kernel_on():
    cpu_kernels.set_enabled(True)
    yield
    cpu_kernels.set_enabled(True)


def _case(batch: AttentionBatch, *, H: int, G: int, E: int, num_layers: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    cache = KVCache(num_layers=num_layers, num_slots=batch.row_end + 1, max_len=48, num_kv_heads=G, head_dim=E,
                    dtype=torch.float32, device=CPU)
    cache.kv_NSCME.copy_(torch.randn(cache.kv_NSCME.shape, generator=generator))
    keys, values = cache.attended(batch)
    B, T = batch.positions_BT.shape
    C = H + 2 * G  # q as the cached forward views it: heads of a [N, C*E] qkv output
    qkv_NC = torch.randn(B * T, C * E, generator=generator)
    q_BHTE = qkv_NC.as_strided((B, H, T, E), (T * C * E, E, C * E, 1))
    return q_BHTE, keys[-1], values[-1]


def _sdpa(q_BHTE, keys_BGLE, values_BGLE, batch):
    out = F.scaled_dot_product_attention(q_BHTE, keys_BGLE, values_BGLE, attn_mask=batch.mask_B1TL,
                                         enable_gqa=keys_BGLE.shape[1] != q_BHTE.shape[1])
    return out.transpose(1, 2)


def _check(batch, seed, **shape):
    q, k, v = _case(batch, seed=seed, **shape)
    got = attend(q, k, v, batch)
    expected = _sdpa(q, k, v, batch)
    B, T = batch.positions_BT.shape
    real = torch.ones(B, T, dtype=torch.bool)
    if batch.mask_B1TL is not None:  # a padded token past the cache's end sees no more than the last position
        real = batch.positions_BT < batch.kv_len
    torch.testing.assert_close(got[real], expected[real], rtol=1e-5, atol=1e-5)
    assert got.shape == expected.shape and got.is_contiguous()


@needs_kernel
@pytest.mark.parametrize("H, G, E, num_layers", [(3, 1, 64, 4), (4, 2, 32, 1), (2, 2, 16, 2), (6, 3, 128, 1)])
def test_decode_verify_and_ragged_batches_match_sdpa(kernel_on, H, G, E, num_layers):
    shape = dict(H=H, G=G, E=E, num_layers=num_layers)
    cases = [([7], 1), ([7], 5), ([5, 5, 5], 1), ([3, 9, 0, 14], 1), ([3, 9, 0, 14], 4), ([12, 2], 9), ([40, 1], 9)]
    for seed, (lens, num_tokens) in enumerate(cases):
        batch = AttentionBatch.build(row_start=0, cache_lens=lens, num_tokens=num_tokens, max_len=48, device=CPU,
                                     dtype=torch.float32)
        _check(batch, seed, **shape)
    for j, batch in enumerate(AttentionBatch.chain(cache_lens=[4, 11, 7], num_steps=4, max_len=48, device=CPU,
                                                   dtype=torch.float32)):
        _check(batch, 100 + j, **shape)


@needs_kernel
def test_rows_after_the_first_are_read_from_their_own_cache_rows(kernel_on):
    batch = AttentionBatch.build(row_start=2, cache_lens=[6, 3], num_tokens=2, max_len=48, device=CPU,
                                 dtype=torch.float32)
    _check(batch, 7, H=3, G=1, E=64, num_layers=2)


def test_what_the_kernel_does_not_take_goes_through_sdpa(kernel_on):
    batch = AttentionBatch.build(row_start=0, cache_lens=[3, 8], num_tokens=2, max_len=48, device=CPU,
                                 dtype=torch.float64)
    q, k, v = (t.double() for t in _case(batch, H=3, G=1, E=24, num_layers=1, seed=3))
    assert torch.equal(attend(q, k, v, batch), _sdpa(q, k, v, batch))
    cpu_kernels.set_enabled(False)
    batch32 = AttentionBatch.build(row_start=0, cache_lens=[3, 8], num_tokens=2, max_len=48, device=CPU,
                                   dtype=torch.float32)
    q, k, v = _case(batch32, H=3, G=1, E=64, num_layers=1, seed=4)
    assert torch.equal(attend(q, k, v, batch32), _sdpa(q, k, v, batch32))
