"""Ray for one run: the embedded local Ray (default) or an existing cluster.

Local: a private Ray with its own temp dir, dashboard (if any) on ray.dashboard_host (127.0.0.1), and Ray's loopback
switch set before it starts, so no Ray process talks over the machine's external address (see
ENVIRONMENT.md). Cluster: `ray.address` or RAY_ADDRESS (what `ray job submit` sets for the job's
driver) joins it. A Ray already initialized in this process (tests) is used as it is and left up.
"""

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from rollspec.actors.loopback import set_loopback_environment
from rollspec.launch.config_sections import RaySection


def cluster_address(config: RaySection) -> str | None:
    """The cluster to join, or None for a local Ray."""
    if config.address != "local":
        return config.address
    return os.environ.get("RAY_ADDRESS") or None


@contextlib.contextmanager
def ray_session(config: RaySection, run_name: str) -> Iterator[str]:
    """Yields a description of the Ray in use; shuts down only a Ray it started or joined."""
    import ray

    set_loopback_environment()
    if ray.is_initialized():
        yield "an already running Ray in this process"
        return
    address = cluster_address(config)
    if address is not None:
        ray.init(address=address, log_to_driver=True)
        where = f"the Ray cluster at {address}"
    else:
        temp_dir = Path(config.temp_root) / f"{run_name}-{os.getpid()}"
        ray.init(num_cpus=config.num_cpus, include_dashboard=config.include_dashboard,
                 dashboard_host=config.dashboard_host, _temp_dir=str(temp_dir), log_to_driver=True)
        where = f"a local Ray ({config.num_cpus} logical CPUs, temp dir {temp_dir})"
    try:
        yield where
    finally:
        ray.shutdown()
