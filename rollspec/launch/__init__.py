"""Typed config, the `rollspec` CLI, local and cluster entry points, run reports."""
