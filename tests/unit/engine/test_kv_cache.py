"""AttentionBatch.chain (a drafter's one-token steps, built at once) describes exactly the batches
AttentionBatch.build makes one step at a time."""

import pytest
import torch

from rollspec.engine.kv_cache import AttentionBatch


@pytest.mark.parametrize("lens, steps, max_len", [([3], 4, 32), ([5, 0, 9, 2], 3, 32), ([7, 30], 5, 32)])
def test_chain_matches_step_by_step_builds(lens, steps, max_len):
    chain = AttentionBatch.chain(cache_lens=lens, num_steps=steps, max_len=max_len, device=torch.device("cpu"),
                                 dtype=torch.float32)
    assert len(chain) == steps
    for j, got in enumerate(chain):
        want = AttentionBatch.build(row_start=0, cache_lens=[n + j for n in lens], num_tokens=1, max_len=max_len,
                                    device=torch.device("cpu"), dtype=torch.float32)
        assert (got.row_start, got.row_end, got.kv_len) == (want.row_start, want.row_end, want.kv_len)
        assert torch.equal(got.positions_BT, want.positions_BT)
        assert torch.equal(got.rows_BT.expand_as(want.rows_BT), want.rows_BT)
        assert (got.mask_B1TL is None) == (want.mask_B1TL is None) == (len(set(lens)) == 1)
        assert got.mask_B1TL is None or torch.equal(got.mask_B1TL, want.mask_B1TL)
