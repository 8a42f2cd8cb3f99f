"""Session-wide settings that must hold before any Ray, vLLM or torch work starts."""

import os
import shutil
from pathlib import Path

import pytest

# Keep every Ray and vLLM connection on loopback (see ../shared/ENVIRONMENT.md).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("VLLM_HOST_IP", "127.0.0.1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Tiny test models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP
# threads that spin-wait for each other slow every op down by an order of magnitude.
import torch  # noqa: E402

torch.set_num_threads(1)

# Property tests draw the same examples on every run unless HYPOTHESIS_PROFILE=explore: a merge is
# judged by one CI run, so a rare example found there must not decide it; `explore` (random,
# more examples) is how to look for such examples on purpose.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="module")
def ray_session():
    """A local Ray for one test module (the pipeline and chaos suites; the learner suite sizes its own)."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # loopback only, even if the shell said otherwise
    import ray

    temp_dir = Path(f"/tmp/rs-t-{os.getpid()}")  # short: Ray keeps unix sockets under it
    ray.init(num_cpus=8, include_dashboard=False, _temp_dir=str(temp_dir), log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
