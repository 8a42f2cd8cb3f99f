"""The prompt stream: fresh prompts by default, shuffled epochs over a fixed prompt set with dataset_size."""

import pytest

from rollspec.actors.prompt_source import PromptSource, dataset_position
from rollspec.launch.train import _reward_by_epoch
from rollspec.rl.mixture import TaskMixture
from rollspec.rl.split import Split
from rollspec.rl.tasks import task_names

MIXTURE = TaskMixture({name: 1.0 for name in task_names()}, 0, split=Split.RL, difficulty=1)


def test_every_epoch_visits_each_prompt_once_in_its_own_order():
    size = 24
    epochs = [[dataset_position(e * size + i, size, seed=3) for i in range(size)] for e in range(4)]
    assert all(sorted(epoch) == list(range(size)) for epoch in epochs)
    assert len({tuple(epoch) for epoch in epochs}) == 4
    assert epochs == [[dataset_position(e * size + i, size, seed=3) for i in range(size)] for e in range(4)]
    assert [dataset_position(i, size, seed=4) for i in range(size)] != epochs[0]
    assert [dataset_position(i, 0, seed=3) for i in range(50)] == list(range(50))


def test_groups_revisit_the_dataset_with_new_ids_and_seeds():
    source = PromptSource(MIXTURE, group_size=4, seed=0, dataset_size=8)
    groups = [source.group(i, policy_version=0) for i in range(16)]
    assert {tuple(g.token_ids) for g in groups[:8]} == {tuple(g.token_ids) for g in groups[8:]}
    assert len({tuple(g.token_ids) for g in groups}) <= 8
    assert len({g.prompt_id for g in groups}) == 16 and len({g.seed for g in groups}) == 16
    fresh = PromptSource(MIXTURE, group_size=4, seed=0)
    assert len({tuple(fresh.group(i, policy_version=0).token_ids) for i in range(16)}) > 8
    with pytest.raises(ValueError, match="dataset_size"):
        PromptSource(MIXTURE, group_size=4, seed=0, dataset_size=-1)


def test_reward_by_epoch_averages_the_steps_of_each_pass():
    assert _reward_by_epoch([0.1, 0.3, 0.5, 0.7, 0.9], dataset_size=32, prompts_per_step=16) == pytest.approx(
        [0.2, 0.6, 0.9])
    assert _reward_by_epoch([0.1, 0.3], dataset_size=0, prompts_per_step=16) == []
