"""The process environment of a learner rank: loopback rendezvous, the CPU accelerator when there is
no GPU, and DeepSpeed's C++ extensions built once per machine into a persistent cache.

The first `deepspeed.init_distributed` on CPU compiles a small C++ extension (the shared-memory
comm op; a minute or two on a 2-core machine). torch caches builds under TORCH_EXTENSIONS_DIR, keyed
by a hash of sources and flags, and serializes concurrent builds with a lock file, so pointing
every rank of every run at one persistent directory means one build per machine.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
EXTENSION_BUILD_TIMEOUT_S = 1800.0

_BUILD_SCRIPT = """
from deepspeed.accelerator import get_accelerator
builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
if builder is not None:
    builder.load()
"""


class ExtensionBuildError(RuntimeError):
    """DeepSpeed's C++ extension did not build; carries the build's output."""


def default_extensions_dir() -> str:
    """TORCH_EXTENSIONS_DIR if the environment sets it, else `<repo>/.cache/torch_extensions`."""
    return os.environ.get("TORCH_EXTENSIONS_DIR") or str(REPO_ROOT / ".cache" / "torch_extensions")


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it; a race with another binder is
    possible but needs the same port within the few seconds before rank 0 binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def rendezvous_file(rendezvous_id: str) -> Path:
    """The torch.distributed FileStore of one learner group: a fresh file in the node's temp dir
    (all ranks share a node; torch removes the file when the group is destroyed).

    Why not the env:// TCP rendezvous: torch's TCPStore listens on every interface, whatever
    MASTER_ADDR says (measured: `*:port` in `ss -tln`), and nothing of the learner may be
    reachable off the machine. gloo's own sockets bind to GLOO_SOCKET_IFNAME=lo.
    """
    if not (rendezvous_id and rendezvous_id.isalnum()):
        raise ValueError(f"rendezvous_id must be a non-empty alphanumeric string, got {rendezvous_id!r}")
    return Path(tempfile.gettempdir()) / f"rollspec-learner-{rendezvous_id}.store"


def rank_environment(*, rank: int, world_size: int, master_port: int, extensions_dir: str,
                     use_cuda: bool) -> dict[str, str]:
    """Variables a rank sets before importing deepspeed: torch.distributed's env:// rendezvous on
    loopback, gloo bound to `lo`, the CPU accelerator without CUDA, the extension cache, and Ray's
    loopback switch (see ENVIRONMENT.md)."""
    env = {
        "MASTER_ADDR": LOOPBACK,
        "MASTER_PORT": str(master_port),
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world_size),
        "GLOO_SOCKET_IFNAME": "lo",
        "TORCH_EXTENSIONS_DIR": extensions_dir,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    if not use_cuda:
        env["DS_ACCELERATOR"] = "cpu"
    return env


def build_deepspeed_extensions(extensions_dir: str | None = None) -> float:
    """Build (or just load, when cached) the CPU extension `deepspeed.init_distributed` needs, in
    `extensions_dir`; returns the seconds it took. Runs in a subprocess so the caller never
    imports deepspeed or switches its accelerator. Safe to call concurrently from several
    processes: torch's build lock makes all but one wait and reuse the result."""
    directory = extensions_dir or default_extensions_dir()
    Path(directory).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "TORCH_EXTENSIONS_DIR": directory}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", _BUILD_SCRIPT], env=env, capture_output=True, text=True,
                            timeout=EXTENSION_BUILD_TIMEOUT_S)
    if result.returncode != 0:
        raise ExtensionBuildError(f"building DeepSpeed's CPU extension in {directory} failed "
                                  f"(exit {result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return time.perf_counter() - start
