"""One Ray session per chaos test module (its own temp dir, loopback only) and a ChaosRunner on it."""

import os
import shutil
from pathlib import Path

import pytest

from rollspec.chaos.runner import ChaosRunner


@pytest.fixture(scope="module")
def ray_session():
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray

    temp_dir = Path(f"/tmp/rs-ch-{os.getpid()}")  # short: Ray keeps unix sockets under it
    ray.init(num_cpus=8, include_dashboard=False, _temp_dir=str(temp_dir), log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def runner(ray_session, tmp_path_factory) -> ChaosRunner:
    return ChaosRunner(tmp_path_factory.mktemp("chaos"))
