"""Drafters propose k tokens per row for the policy to verify: a draft model, an EAGLE-style
head, MTP heads stored with the policy, and an n-gram / suffix lookup."""
