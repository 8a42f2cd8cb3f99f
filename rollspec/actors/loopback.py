"""The environment that keeps Ray (and vLLM) traffic on 127.0.0.1 (see ENVIRONMENT.md).

Ray reads RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER when `ray` is first imported, so the driver must set
it before that import (rollspec.launch does on import); actor processes get it from their
runtime_env. A real multi-node cluster must not use it.
"""

import os

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "VLLM_HOST_IP": "127.0.0.1",
                "TOKENIZERS_PARALLELISM": "false"}


def set_loopback_environment() -> None:
    """Set every LOOPBACK_ENV variable this process does not set already."""
    for name, value in LOOPBACK_ENV.items():
        os.environ.setdefault(name, value)
