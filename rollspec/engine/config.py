"""Engine configuration, built by launch/ from the validated user config."""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """Sizes the preallocated state and says where the engine runs."""

    max_batch_size: int = 64  # rows in the KV cache: the most sequences generating at once
    max_seq_len: int = 512  # prompt plus generated tokens per sequence
    k_max: int = 8  # deepest speculation the cache is sized for
    device: str = "cpu"
    dtype: str = "float32"
    seed: int = 0  # seeds requests that carry no seed of their own
    # Step times for the depth policy: "auto" = thread CPU time on a single-threaded CPU engine, else wall.
    step_clock: Literal["auto", "thread", "wall"] = "auto"
    share_prompt_prefill: bool = True  # a prompt another row holds under the same weights (a GRPO group) is not prefilled again

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    @property
    def cache_len(self) -> int:
        # A verify step writes k_max + 1 positions past the last committed one.
        return self.max_seq_len + self.k_max + 1
