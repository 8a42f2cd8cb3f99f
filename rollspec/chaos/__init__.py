"""Fault injectors, scenarios and the invariant checker."""
