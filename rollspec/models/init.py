"""Seeded weight initialization for training from scratch.

PyTorch's default nn.Linear / nn.Embedding init (Kaiming-uniform, unit-variance embeddings)
makes a poor language model start: logits come out large and deep residual streams grow with
depth. We use the GPT-2 recipe instead: N(0, 0.02) everywhere, with the projections that write
into the residual stream (o_proj, down_proj) scaled by 1/sqrt(2 * num_layers) so the stream's
variance at the last layer does not depend on depth. Norm weights start at 1, biases at 0.
"""

from __future__ import annotations

import math

import torch
from torch import nn

BASE_STD = 0.02
RESIDUAL_OUTPUTS = ("o_proj.weight", "down_proj.weight")


def init_weights(module: nn.Module, *, seed: int, num_layers: int) -> None:
    """Initialize every parameter of `module` in place from `seed` (see the module docstring)."""
    generator = torch.Generator().manual_seed(seed)
    residual_std = BASE_STD / math.sqrt(2 * max(num_layers, 1))
    with torch.no_grad():
        # named_parameters visits a tied weight once, so a tied LM head keeps the embedding's init.
        for name, param in module.named_parameters():
            if name.endswith("norm.weight"):
                param.fill_(1.0)
            elif name.endswith("bias"):
                param.zero_()
            else:
                std = residual_std if name.endswith(RESIDUAL_OUTPUTS) else BASE_STD
                param.copy_(torch.randn(param.shape, generator=generator) * std)
