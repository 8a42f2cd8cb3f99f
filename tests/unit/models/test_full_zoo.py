"""The real zoo (`rollspec make-models`): slow, minutes on 2 CPU cores. Checks the numbers the
rest of the project relies on: an imperfect but useful policy and a drafter worth speculating with."""

import pytest

from rollspec.models.manifest import mismatched_files, read_manifest
from rollspec.models.zoo import ensure_zoo

pytestmark = pytest.mark.slow


def test_full_zoo_is_useful_and_fast_to_draft(tmp_path_factory):
    paths = ensure_zoo(progress=False)
    manifest = read_manifest(paths.root)
    assert not mismatched_files(paths.root, manifest)
    accuracy = manifest["accuracy"]["temperature_1"]["mean"]
    assert 0.1 <= accuracy <= 0.9, manifest["accuracy"]
    best = max(manifest["acceptance"]["temperature_1"][kind]["acceptance_length"]
               for kind in ("draft_model", "eagle", "mtp"))
    assert best >= 2.5, manifest["acceptance"]
    assert manifest["cost"]["batch_1"]["policy_over_draft_model"] >= 2.0, manifest["cost"]
