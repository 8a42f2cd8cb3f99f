"""Rollout, reward, learner and draft-refresh actors plus the controller. Thin glue."""
