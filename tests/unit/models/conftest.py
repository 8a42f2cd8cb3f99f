"""One tiny zoo per test session: the full build pipeline at toy sizes, in a few seconds."""

import pytest

from rollspec.models.recipe import tiny_recipe
from rollspec.models.zoo import build_zoo

SEED = 7


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory):
    return build_zoo(tmp_path_factory.mktemp("zoo") / "zoo", seed=SEED, progress=False, recipe=tiny_recipe())
