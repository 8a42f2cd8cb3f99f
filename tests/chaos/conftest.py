"""One Ray session per chaos test module (its own temp dir, loopback only) and a ChaosRunner on it."""


import pytest

from rollspec.chaos.runner import ChaosRunner


@pytest.fixture(scope="module")
def runner(ray_session, tmp_path_factory) -> ChaosRunner:
    return ChaosRunner(tmp_path_factory.mktemp("chaos"))
