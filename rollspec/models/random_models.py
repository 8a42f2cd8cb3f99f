"""Seeded random models for tests: a policy, a draft model, an EAGLE head and MTP heads that fit
together (same vocabulary and hidden size where they must)."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from rollspec.engine.eagle_head import EagleHead
from rollspec.engine.model import Decoder
from rollspec.engine.model_config import ModelConfig
from rollspec.engine.mtp_head import MTPHeads


def tiny_config(**overrides) -> ModelConfig:
    """A small Qwen3 config; any field can be overridden."""
    fields = dict(model_type="qwen3", vocab_size=32, hidden_size=64, intermediate_size=128, num_layers=2,
                  num_heads=4, num_kv_heads=2, head_dim=16, rms_norm_eps=1e-6, rope_theta=10000.0,
                  max_position_embeddings=1024, tie_word_embeddings=False, qk_norm=True, qkv_bias=False,
                  o_bias=False)
    fields.update(overrides)
    return ModelConfig(**fields)


def eagle_config(policy: ModelConfig) -> ModelConfig:
    """A one-layer Llama-style config matching the policy's hidden size and vocabulary."""
    return dataclasses.replace(policy, model_type="llama", num_layers=1, qk_norm=False, qkv_bias=False,
                               o_bias=False, num_mtp_layers=0, tie_word_embeddings=False)


def _randomize(module: nn.Module, seed: int, std: float) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(1.0 + 0.1 * torch.randn(param.shape, generator=generator))
            else:
                param.copy_(std * torch.randn(param.shape, generator=generator))
    module.eval().requires_grad_(False)


def random_decoder(cfg: ModelConfig, *, seed: int, std: float = 0.02) -> Decoder:
    """A Decoder with seeded random weights (norm weights jittered around 1)."""
    model = Decoder(cfg)
    _randomize(model, seed, std)
    return model


def random_eagle_head(policy: ModelConfig, *, seed: int, std: float = 0.02) -> EagleHead:
    head = EagleHead(eagle_config(policy))
    _randomize(head, seed, std)
    return head


def random_mtp_heads(policy: ModelConfig, *, num_layers: int, seed: int, std: float = 0.02) -> MTPHeads:
    heads = MTPHeads(dataclasses.replace(policy, num_mtp_layers=num_layers))
    _randomize(heads, seed, std)
    return heads
