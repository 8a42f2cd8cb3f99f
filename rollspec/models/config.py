"""Config of the models package's run-time core: how the draft-refresh actor distills its drafter."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RefreshConfig:
    """One refresh: up to `steps` AdamW steps on `batch_size` recent trajectories, cut short after
    `max_seconds` (the compute budget). The optimizer state carries over between refreshes."""

    steps: int = 16
    batch_size: int = 32
    lr: float = 3e-4
    grad_clip: float = 1.0
    max_seconds: float = 60.0
    buffer_sequences: int = 512
    """The most recent trajectories kept to train on; older ones were sampled by older policies."""
    min_sequences: int = 8
    """No refresh before this many trajectories have arrived (it would fit noise); at least 2, as the
    newest min(batch_size, half) of them are held out to check the refresh."""
    eagle_unroll: int = 3
    eagle_feature_weight: float = 1.0
    mtp_depth: int = 4
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "batch_size", "buffer_sequences", "eagle_unroll", "mtp_depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"RefreshConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 2 <= self.min_sequences <= self.buffer_sequences:
            raise ValueError(f"RefreshConfig.min_sequences must be in [2, buffer_sequences={self.buffer_sequences}], "
                             f"got {self.min_sequences}")
        if not (self.lr > 0 and self.grad_clip > 0 and self.max_seconds > 0):
            raise ValueError(f"RefreshConfig lr, grad_clip and max_seconds must be > 0, got {self.lr}, "
                             f"{self.grad_clip}, {self.max_seconds}")
