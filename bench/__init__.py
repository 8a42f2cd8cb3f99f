"""Benchmarks: each writes bench/results/<name>.json and prints the BENCHMARKS.md row."""
