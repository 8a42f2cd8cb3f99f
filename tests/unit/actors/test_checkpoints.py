"""Checkpoint directories: only complete ones count, the newest wins, old ones are pruned, state round-trips."""

import json

import pytest

from rollspec.actors.checkpoints import CheckpointNotFoundError, CheckpointStore, write_json_atomic
from rollspec.actors.controller_state import ControllerState, ControllerStateError
from rollspec.actors.prompt_source import PromptSource, sample_seed
from rollspec.rl.mixture import TaskMixture


def test_latest_complete_checkpoint_wins_and_incomplete_ones_are_ignored(tmp_path):
    store = CheckpointStore(tmp_path, keep_last=2)
    with pytest.raises(CheckpointNotFoundError):
        store.latest()
    store.complete(2, {"step": 2})
    store.complete(4, {"step": 4})
    store.learner_dir(6).mkdir(parents=True)  # crashed while the learner was writing step 6
    assert store.latest() == (4, {"step": 4})
    store.complete(8, {"step": 8})
    assert store.complete_steps() == [4, 8]  # keep_last=2
    assert not store.step_dir(2).exists()


def test_atomic_json_write_leaves_no_temp_files(tmp_path):
    path = tmp_path / "a" / "state.json"
    write_json_atomic(path, {"x": 1})
    write_json_atomic(path, {"x": 2})
    assert json.loads(path.read_text()) == {"x": 2}
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]


def test_controller_state_round_trips_and_rejects_foreign_files():
    state = ControllerState(step=3, policy_version=3, draft_version=2, next_prompt_index=12)
    state.ledger.issue("p11", prompt_index=11, group_size=4, policy_version=3)
    state.count("checkpoints")
    again = ControllerState.from_json(json.loads(json.dumps(state.to_json())))
    assert again.to_json() == state.to_json()
    with pytest.raises(ControllerStateError):
        ControllerState.from_json({"format": 99})
    with pytest.raises(ControllerStateError):
        ControllerState.from_json({"format": 1, "step": 3})


def test_prompt_groups_are_a_pure_function_of_the_index():
    mixture = TaskMixture({"addition": 1.0, "reversal": 1.0}, seed=5)
    a, b = PromptSource(mixture, group_size=4, seed=1), PromptSource(mixture, group_size=4, seed=1)
    first, again = a.group(7, policy_version=0), b.group(7, policy_version=3)
    assert (first.prompt_id, first.token_ids, first.seed) == (again.prompt_id, again.token_ids, again.seed)
    assert first.prompt_id == "p7" and first.group_size == 4
    assert sample_seed(1, 7) != sample_seed(1, 8) and sample_seed(1, 7) != sample_seed(2, 7)
    assert 0 <= sample_seed(1, 7) < 2**62 - 1024
