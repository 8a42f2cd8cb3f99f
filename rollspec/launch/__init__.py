"""Typed config, the `rollspec` CLI, local and cluster entry points, run reports."""

from rollspec.actors.loopback import set_loopback_environment

# Before anything in the launching process imports ray: Ray fixes its node address at import time.
set_loopback_environment()
