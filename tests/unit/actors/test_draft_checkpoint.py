"""A checkpoint's draft directory: weights and versions round-trip, a damaged one is refused, and the
checkpoint manifest covers it (a truncated draft file makes the whole checkpoint refused)."""

import json
import random

import pytest
import torch

from rollspec.actors.checkpoint_manifest import CheckpointCorruptError
from rollspec.actors.checkpoints import CheckpointStore
from rollspec.actors.draft_checkpoint import (
    META_FILE,
    TRAINER_META_FILE,
    TRAINER_WEIGHTS_FILE,
    WEIGHTS_FILE,
    DraftCheckpointError,
    SavedDraft,
    load_draft,
    load_trainer,
    read_saved_draft,
    save_draft,
    weights_digest,
)
from rollspec.models.distiller_state import TrainerState
from rollspec.models.token_batch import TokenSequence

WEIGHTS = {"fc.weight": torch.arange(6.0).reshape(2, 3), "layers.0.norm.weight": torch.ones(3, dtype=torch.bfloat16)}


def test_draft_round_trips_with_its_versions(tmp_path):
    saved = SavedDraft(drafter="eagle", draft_version=7, policy_version=12)
    save_draft(tmp_path / "draft", saved, WEIGHTS)
    again, weights = load_draft(tmp_path / "draft")
    assert again == saved
    assert weights_digest(weights) == weights_digest(WEIGHTS)
    assert all(torch.equal(weights[n], WEIGHTS[n]) and weights[n].dtype == WEIGHTS[n].dtype for n in WEIGHTS)
    assert load_draft(tmp_path / "draft", "eagle")[0] == saved
    with pytest.raises(DraftCheckpointError, match="an? eagle draft, this run drafts with draft_model"):
        load_draft(tmp_path / "draft", "draft_model")


def test_digest_tells_weights_apart():
    changed = {**WEIGHTS, "fc.weight": WEIGHTS["fc.weight"] + 1e-3}
    renamed = {"fc.w": WEIGHTS["fc.weight"], "layers.0.norm.weight": WEIGHTS["layers.0.norm.weight"]}
    digests = {weights_digest(w) for w in (WEIGHTS, changed, renamed, {**WEIGHTS, "x": torch.zeros(0)})}
    assert len(digests) == 4


def test_no_draft_is_none_and_a_malformed_one_is_refused(tmp_path):
    assert read_saved_draft(tmp_path) is None
    (tmp_path / META_FILE).write_text(json.dumps({"drafter": "eagle", "draft_version": "seven"}))
    with pytest.raises(DraftCheckpointError, match="malformed"):
        read_saved_draft(tmp_path)
    (tmp_path / META_FILE).write_text(json.dumps({"drafter": "eagle", "draft_version": 1, "policy_version": 1}))
    (tmp_path / WEIGHTS_FILE).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(DraftCheckpointError, match="unreadable"):
        load_draft(tmp_path)


def test_the_checkpoint_manifest_covers_the_draft(tmp_path):
    store = CheckpointStore(tmp_path)
    with store.writing(3):
        save_draft(store.draft_dir(3), SavedDraft(drafter="draft_model", draft_version=2, policy_version=3), WEIGHTS)
        store.complete(3, {"step": 3})
    store.verify(3)
    path = store.draft_dir(3) / WEIGHTS_FILE
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(CheckpointCorruptError, match="truncated"):
        store.verify(3)


TRAINER = TrainerState({"fc.weight@exp_avg": torch.full((2, 3), 0.5), "fc.weight@step": torch.tensor(4.0)},
                       random.Random(3).getstate())
BUFFER = (TokenSequence((5, 6, 7), 1), TokenSequence((1, 2, 3, 4), 3))


def test_the_trainer_state_and_buffer_round_trip_and_a_draft_without_them_has_none(tmp_path):
    saved = SavedDraft(drafter="eagle", draft_version=2, policy_version=2)
    save_draft(tmp_path / "with", saved, WEIGHTS, TRAINER, BUFFER)
    trainer, buffer = load_trainer(tmp_path / "with")
    assert trainer.rng_state == TRAINER.rng_state and trainer.optimizer_steps == 4
    assert all(torch.equal(trainer.optimizer[n], t) for n, t in TRAINER.optimizer.items())
    assert trainer.optimizer.keys() == TRAINER.optimizer.keys() and tuple(buffer) == BUFFER
    save_draft(tmp_path / "without", saved, WEIGHTS)  # refresh passing weights through, or an older checkpoint
    assert load_trainer(tmp_path / "without") is None and load_draft(tmp_path / "without")[0] == saved
    save_draft(tmp_path / "buffer-only", saved, WEIGHTS, None, BUFFER)
    assert load_trainer(tmp_path / "buffer-only") == (None, list(BUFFER))


@pytest.mark.parametrize("damage", ["format", "rng", "prompt_len", "token", "json", "weights"])
def test_a_damaged_trainer_state_is_refused(tmp_path, damage):
    save_draft(tmp_path, SavedDraft(drafter="eagle", draft_version=2, policy_version=2), WEIGHTS, TRAINER, BUFFER)
    meta = json.loads((tmp_path / TRAINER_META_FILE).read_text())
    if damage == "format":
        meta["format"] = 99
    elif damage == "rng":
        meta["rng_state"][1] = meta["rng_state"][1][:5]
    elif damage == "prompt_len":
        meta["buffer"][0][0] = 3  # no response left to train on
    elif damage == "token":
        meta["buffer"][1][1][0] = "x"
    (tmp_path / TRAINER_META_FILE).write_text("{" if damage == "json" else json.dumps(meta))
    if damage == "weights":
        path = tmp_path / TRAINER_WEIGHTS_FILE
        path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(DraftCheckpointError, match="unreadable" if damage == "weights" else "malformed"):
        load_trainer(tmp_path)
