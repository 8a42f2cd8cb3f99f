"""A checkpoint's draft directory: weights and versions round-trip, a damaged one is refused, and the
checkpoint manifest covers it (a truncated draft file makes the whole checkpoint refused)."""

import json

import pytest
import torch

from rollspec.actors.checkpoint_manifest import CheckpointCorruptError
from rollspec.actors.checkpoints import CheckpointStore
from rollspec.actors.draft_checkpoint import (
    META_FILE,
    WEIGHTS_FILE,
    DraftCheckpointError,
    SavedDraft,
    load_draft,
    read_saved_draft,
    save_draft,
    weights_digest,
)

WEIGHTS = {"fc.weight": torch.arange(6.0).reshape(2, 3), "layers.0.norm.weight": torch.ones(3, dtype=torch.bfloat16)}


def test_draft_round_trips_with_its_versions(tmp_path):
    saved = SavedDraft(drafter="eagle", draft_version=7, policy_version=12)
    save_draft(tmp_path / "draft", saved, WEIGHTS)
    again, weights = load_draft(tmp_path / "draft")
    assert again == saved
    assert weights_digest(weights) == weights_digest(WEIGHTS)
    assert all(torch.equal(weights[n], WEIGHTS[n]) and weights[n].dtype == WEIGHTS[n].dtype for n in WEIGHTS)


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
