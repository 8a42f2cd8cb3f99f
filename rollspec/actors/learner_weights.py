"""Full policy weights out of a DeepSpeed engine, under Hugging Face names (the broadcast wire format).

Under ZeRO-1/2 every rank holds the full parameters; under ZeRO-3 each holds a shard and the full
tensors exist only inside a gather that every rank must enter, one module at a time, with rank 0
keeping a CPU copy (`_zero3_consolidated_16bit_state_dict`, despite its name, keeps the parameters'
dtype). Only rank 0 gets the result.
"""

from __future__ import annotations

import torch
from torch import nn

from rollspec.engine.model import Decoder
from rollspec.engine.model_config import ModelConfig
from rollspec.engine.weights import native_to_hf

WRAPPER_PREFIX = "decoder."  # rl.grpo_step.PolicyLogits holds the Decoder under this name


def gather_native_state(engine: object, module: nn.Module, *, zero_stage: int, rank: int) -> dict[str, torch.Tensor] | None:
    """The Decoder's state dict (native names, CPU copies) on rank 0, None elsewhere. Under ZeRO-3
    this is a collective: every rank must call it."""
    if zero_stage == 3:
        state = engine._zero3_consolidated_16bit_state_dict()  # type: ignore[attr-defined]
    elif rank == 0:
        state = {name: tensor.detach().cpu().clone() for name, tensor in module.state_dict().items()}
    else:
        state = None
    if state is None:
        return None
    return {name.removeprefix(WRAPPER_PREFIX): tensor for name, tensor in state.items()}


def native_state_to_hf(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Hugging Face names for a Decoder state dict, through `engine.weights.native_to_hf` on a
    meta-device shell holding the given tensors (so the name mapping lives in one place). Fused
    weights come back as views into the given tensors: clone before pickling."""
    with torch.device("meta"):
        shell = Decoder(cfg)
    shell.load_state_dict(state, strict=True, assign=True)
    shell.tie_weights()
    return native_to_hf(shell)
