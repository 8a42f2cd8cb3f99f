"""Session-wide settings that must hold before any Ray, vLLM or torch work starts."""

import os

# Keep every Ray and vLLM connection on loopback (see ../shared/ENVIRONMENT.md).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("VLLM_HOST_IP", "127.0.0.1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Tiny test models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP
# threads that spin-wait for each other slow every op down by an order of magnitude.
import torch  # noqa: E402

torch.set_num_threads(1)
