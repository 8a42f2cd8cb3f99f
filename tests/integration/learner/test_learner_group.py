"""LearnerGroup placement and failure: requests the cluster cannot satisfy fail at once or after the
placement timeout with the numbers, and a rank that fails is named and its CPUs come back."""

import time
from pathlib import Path

import pytest
import ray
from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group

from rollspec.actors.learner_config import LearnerConfig
from rollspec.actors.learner_group import LearnerGroup, LearnerPlacementError, LearnerRankError
from rollspec.engine.errors import ModelDirectoryError

RAY_CPUS = 2.0  # what the ray_session fixture starts with


def live_placement_groups() -> list:
    return [pg for pg in placement_group_table().values() if pg["state"] != "REMOVED"]


def wait_for_free_cpus(expected: float, timeout_s: float = 30.0) -> float:
    deadline = time.monotonic() + timeout_s
    while (free := ray.available_resources().get("CPU", 0.0)) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return free


@pytest.mark.parametrize("num_ranks, cpus_per_rank, needed", [(3, 1.0, 3.0), (1, 4.0, 4.0)])
def test_more_cpus_than_the_cluster_has_is_a_clear_error(ray_session, model_dir, num_ranks, cpus_per_rank, needed):
    config = LearnerConfig(num_ranks=num_ranks, cpus_per_rank=cpus_per_rank)
    with pytest.raises(LearnerPlacementError, match=rf"= {needed} CPUs, but the Ray cluster has {RAY_CPUS}"):
        LearnerGroup(model_dir, config)
    assert live_placement_groups() == []


def test_cpus_held_by_others_time_out_with_a_clear_error(ray_session, model_dir):
    assert ray.cluster_resources()["CPU"] == RAY_CPUS
    hold = placement_group([{"CPU": RAY_CPUS}])
    ray.get(hold.ready(), timeout=30)
    try:
        config = LearnerConfig(num_ranks=2, cpus_per_rank=1.0, placement_timeout_s=2.0)
        start = time.monotonic()
        with pytest.raises(LearnerPlacementError, match=r"within 2.0 s; free CPUs now: 0.0 of 2.0"):
            LearnerGroup(model_dir, config)
        assert time.monotonic() - start < 15
    finally:
        remove_placement_group(hold)
    assert [pg["strategy"] for pg in live_placement_groups()] == []
    assert wait_for_free_cpus(RAY_CPUS) == RAY_CPUS


def test_a_bad_model_directory_fails_before_any_rank_starts(ray_session, tmp_path):
    with pytest.raises(ModelDirectoryError, match="has no config.json"):
        LearnerGroup(tmp_path, LearnerConfig(num_ranks=2))
    assert live_placement_groups() == []


@pytest.mark.slow
def test_a_failing_rank_is_named_and_its_cpus_come_back(ray_session, model_dir, tmp_path):
    broken = Path(tmp_path) / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((Path(model_dir) / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"not safetensors")  # ranks fail loading, after the rendezvous
    expected = r"^learner rank [01] failed in setup\(\): ModelDirectoryError: cannot read weights"
    with pytest.raises(LearnerRankError, match=expected):
        LearnerGroup(broken, LearnerConfig(num_ranks=2, cpus_per_rank=1.0, setup_timeout_s=300.0))
    assert live_placement_groups() == []
    assert wait_for_free_cpus(RAY_CPUS) == RAY_CPUS
