"""Decisions from live numbers: acceptance, cost, speculation depth, admission. Pure logic."""
