"""Builds the small HF-format model zoo locally by training on built-in tasks."""
