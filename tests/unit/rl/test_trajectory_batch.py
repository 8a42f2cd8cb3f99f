"""Rollouts become correctly aligned training rows, and split into shards without loss or overlap."""

import pytest
import torch

from rollspec.rl.config import AdvantageConfig
from rollspec.rl.trajectory_batch import RolloutSample, TrajectoryBatchError, build_batch
from rollspec.rl.vocab import BOS_ID, PAD_ID


def sample(prompt, tokens, logprobs, reward, group="g0", version=0):
    return RolloutSample(prompt_token_ids=prompt, token_ids=tokens, logprobs=logprobs, reward=reward,
                         group_id=group, policy_version=version)


def test_hand_checked_alignment():
    batch = build_batch([
        sample([1, 5, 6], [7, 8, 2], [-0.1, -0.2, -0.3], reward=1.0, version=3),
        sample([1, 9], [4], [-0.5], reward=0.0, version=2),
    ])
    # Row 0: prompt at 0..2, completion at 3..5, so positions 2, 3, 4 predict it.
    assert batch.input_ids_BT.tolist() == [[1, 5, 6, 7, 8, 2], [1, 9, 4, 0, 0, 0]]
    assert batch.response_mask_BT.tolist() == [[0, 0, 1, 1, 1, 0], [0, 1, 0, 0, 0, 0]]
    expected = torch.tensor([[0, 0, -0.1, -0.2, -0.3, 0], [0, -0.5, 0, 0, 0, 0]])
    torch.testing.assert_close(batch.behaviour_logprobs_BT, expected)
    # One group of rewards (1, 0): population std 0.5, so advantages are +-1.
    torch.testing.assert_close(batch.advantages_B, torch.tensor([1.0, -1.0]), atol=1e-5, rtol=0)
    assert batch.policy_versions_B.tolist() == [3, 2]
    assert batch.sequence_lengths_B.tolist() == [6, 3]
    assert batch.num_tokens == 4 and batch.loss_normalizer == 4.0


def test_advantages_are_normalized_within_each_group():
    batch = build_batch([
        sample([1], [3], [-1.0], reward=2.0, group="a"),
        sample([1], [3], [-1.0], reward=5.0, group="b"),
        sample([1], [3], [-1.0], reward=0.0, group="a"),
        sample([1], [3], [-1.0], reward=5.0, group="b"),
    ], AdvantageConfig(scale_by_std=False))
    # Dr. GRPO: r - group mean; group b's rewards are equal, so exactly zero.
    assert batch.advantages_B.tolist() == [1.0, 0.0, -1.0, 0.0]


def test_empty_completion_contributes_no_tokens():
    batch = build_batch([sample([1, 2], [], [], reward=1.0), sample([1], [3, 2], [-0.1, -0.2], reward=0.0)])
    assert batch.response_mask_BT[0].sum() == 0
    assert batch.num_tokens == 2


@pytest.mark.parametrize("bad, message", [
    (sample([], [3], [-0.1], 1.0), "empty prompt"),
    (sample([1], [3, 4], [-0.1], 1.0), "1 logprobs for 2 completion tokens"),
    (sample([1], [3], [0.5], 1.0), "not a finite value <= 0"),
    (sample([1], [3], [float("nan")], 1.0), "not a finite value <= 0"),
    (sample([1], [3], [-0.1], float("inf")), "not finite"),
])
def test_bad_samples_are_rejected_with_the_bad_value(bad, message):
    with pytest.raises(TrajectoryBatchError, match=message):
        build_batch([sample([1], [3], [-0.1], 0.0), bad])


def test_empty_batch_is_rejected():
    with pytest.raises(TrajectoryBatchError, match="zero samples"):
        build_batch([])


def ragged_batch(num):
    generator = torch.Generator().manual_seed(0)
    samples = []
    for i in range(num):
        prompt_len, new_len = 1 + i % 3, int(torch.randint(0, 6, (1,), generator=generator))
        tokens = torch.randint(3, 30, (new_len,), generator=generator).tolist()
        samples.append(sample([BOS_ID] * prompt_len, tokens, [-0.5] * new_len, reward=float(i % 2), group=f"g{i // 4}",
                              version=i))
    return build_batch(samples)


@pytest.mark.parametrize("num, world, micro", [(7, 2, 2), (8, 2, 4), (3, 2, 1), (1, 2, 3), (10, 3, 2)])
def test_split_covers_every_row_once_with_equal_micro_batch_counts(num, world, micro):
    batch = ragged_batch(num)
    shards = batch.split(world, micro)
    assert len(shards) == world
    assert len({len(shard) for shard in shards}) == 1, "ranks must run the same number of micro-batches"
    seen = []
    for shard in shards:
        for mb in shard:
            assert mb.num_sequences <= micro
            assert mb.loss_normalizer == pytest.approx(batch.num_tokens / world)
            # Trimmed to the longest row it holds.
            assert mb.input_ids_BT.shape[1] == int(mb.sequence_lengths_B.max())
            is_filler = mb.input_ids_BT.tolist() == [[PAD_ID, PAD_ID]]  # real rows start with BOS here
            assert not is_filler or mb.num_tokens == 0
            if not is_filler:
                seen += mb.policy_versions_B.tolist()  # versions are the row indices here
    assert sorted(seen) == list(range(num))
    total = sum(mb.num_tokens for shard in shards for mb in shard)
    assert total == batch.num_tokens


def test_split_is_deterministic_and_rows_keep_their_data():
    batch = ragged_batch(9)
    first, second = batch.split(2, 2), batch.split(2, 2)
    for shard_a, shard_b in zip(first, second):
        for a, b in zip(shard_a, shard_b):
            assert torch.equal(a.input_ids_BT, b.input_ids_BT)
    mb = first[1][0]  # rank 1 takes rows 1 and 3
    for local, row in enumerate([1, 3]):
        width = int(batch.sequence_lengths_B[row])
        assert torch.equal(mb.input_ids_BT[local, :width], batch.input_ids_BT[row, :width])
        assert torch.equal(mb.behaviour_logprobs_BT[local, :width], batch.behaviour_logprobs_BT[row, :width])
        assert mb.advantages_B[local] == batch.advantages_B[row]


def test_split_rejects_bad_sizes():
    with pytest.raises(TrajectoryBatchError, match="world_size must be an int >= 1, got 0"):
        ragged_batch(3).split(0, 1)
    with pytest.raises(TrajectoryBatchError, match="micro_batch_size"):
        ragged_batch(3).micro_batches(0)
