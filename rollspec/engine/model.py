"""Decoder for the Llama / Qwen2 / Qwen3 family, with a cached path for generation and a plain
causal path for training.

Shape legend: B batch, T tokens, D hidden, H heads, G kv heads, E head dim, I intermediate,
V vocab, L keys attended.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rollspec.engine import fused_stack
from rollspec.engine.cached_forward import LayerInputs, final_norm, layer_forward, project
from rollspec.engine.kv_cache import AttentionBatch, KVCache
from rollspec.engine.model_config import ModelConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


class Rotary(nn.Module):
    """Precomputed cos/sin tables (rotate-half convention, as in the HF checkpoints)."""

    def __init__(self, head_dim: int, theta: float, max_positions: int) -> None:
        super().__init__()
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        freqs = torch.outer(torch.arange(max_positions, dtype=torch.float64), inv_freq)
        angles = torch.cat([freqs, freqs], dim=-1)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)
        # rotate_half(x) * sin == x.roll(E/2) * sin_signed (cached_forward's one-op RoPE).
        signed = angles.sin().float()
        signed[:, : head_dim // 2].neg_()
        self.register_buffer("sin_signed", signed, persistent=False)

    def tables(self, positions_BT: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cos[positions_BT].to(dtype)[:, None], self.sin[positions_BT].to(dtype)[:, None]


def apply_rotary(x_BHTE: torch.Tensor, cos_B1TE: torch.Tensor, sin_B1TE: torch.Tensor) -> torch.Tensor:
    half = x_BHTE.shape[-1] // 2
    rotated = torch.cat([-x_BHTE[..., half:], x_BHTE[..., :half]], dim=-1)
    return x_BHTE * cos_B1TE + rotated * sin_B1TE


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        # q, k and v share one matmul; the loader concatenates the checkpoint's three weights.
        self.qkv_proj = nn.Linear(cfg.hidden_size, (cfg.num_heads + 2 * cfg.num_kv_heads) * cfg.head_dim,
                                  bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(cfg.num_heads * cfg.head_dim, cfg.hidden_size, bias=cfg.o_bias)
        self.q_norm = RMSNorm(cfg.head_dim, cfg.rms_norm_eps) if cfg.qk_norm else None
        self.k_norm = RMSNorm(cfg.head_dim, cfg.rms_norm_eps) if cfg.qk_norm else None

    def forward(self, x_BTD: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Causal self-attention over the given tokens alone (training, scoring); generation over
        the KV cache goes through cached_forward.layer_forward."""
        B, T, _ = x_BTD.shape
        H, G, E = self.num_heads, self.num_kv_heads, self.head_dim
        q_BTHE, k_BTGE, v_BTGE = self.qkv_proj(x_BTD).view(B, T, H + 2 * G, E).split([H, G, G], dim=2)
        if self.q_norm is not None:
            q_BTHE, k_BTGE = self.q_norm(q_BTHE), self.k_norm(k_BTGE)
        q_BHTE = apply_rotary(q_BTHE.transpose(1, 2), cos, sin)
        k_BGTE = apply_rotary(k_BTGE.transpose(1, 2), cos, sin)
        out_BHTE = F.scaled_dot_product_attention(
            q_BHTE, k_BGTE, v_BTGE.transpose(1, 2), is_causal=True, enable_gqa=G != H)
        return self.o_proj(out_BHTE.transpose(1, 2).reshape(B, T, H * E))


class MLP(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.gate_up_proj = nn.Linear(hidden_size, 2 * intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x_BTD, cos, sin):
        x_BTD = x_BTD + self.self_attn(self.input_layernorm(x_BTD), cos, sin)
        return x_BTD + self.mlp(self.post_attention_layernorm(x_BTD))


class Decoder(nn.Module):
    """The policy or draft model. `forward` returns final-norm hidden states (what the LM head,
    EAGLE and MTP heads read); `logits` applies the LM head."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.tie_weights()
        self.rotary = Rotary(cfg.head_dim, cfg.rope_theta, cfg.max_position_embeddings)

    def forward(
        self, input_ids_BT: torch.Tensor, *, cache: KVCache | None = None, batch: AttentionBatch | None = None,
    ) -> torch.Tensor:
        """Without a cache: plain causal attention over the given tokens (training, scoring).
        With a cache: new tokens at batch.positions_BT attend to the cached rows they extend, and their
        hidden states also go into the cache's hidden store if it has one."""
        if cache is not None:
            return self._forward_cached(input_ids_BT, cache, batch)
        x_BTD = self.embed_tokens(input_ids_BT)
        positions_BT = torch.arange(input_ids_BT.shape[1], device=input_ids_BT.device)[None]
        cos, sin = self.rotary.tables(positions_BT, x_BTD.dtype)
        for i, layer in enumerate(self.layers):
            x_BTD = layer(x_BTD, cos, sin)
        return self.norm(x_BTD)

    def _forward_cached(self, input_ids_BT: torch.Tensor, cache: KVCache, batch: AttentionBatch) -> torch.Tensor:
        B, T = input_ids_BT.shape
        fused_ND = fused_stack.forward(self, input_ids_BT, cache, batch)
        if fused_ND is not None:
            return fused_ND.view(B, T, -1)
        x_ND = F.embedding(input_ids_BT.reshape(-1), self.embed_tokens.weight)
        inputs = LayerInputs(self.rotary, cache, batch, x_ND.dtype)
        for index, layer in enumerate(self.layers):
            x_ND = layer_forward(layer, x_ND, inputs, index, B, T)
        hidden_BTD = final_norm(x_ND, self.norm.weight, self.norm.eps).view(B, T, -1)
        if cache.hidden is not None:
            cache.hidden.write(batch, hidden_BTD)
        return hidden_BTD

    def tie_weights(self) -> None:
        """Share the embedding with the LM head when the checkpoint says so (redo after to_empty)."""
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden)

    def cached_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """`logits` for generation (no gradient): one mm on a cached [D, V] copy of the LM head."""
        return project(hidden, self.lm_head)

    def new_cache(self, *, num_slots: int, max_len: int) -> KVCache:
        param = self.embed_tokens.weight
        cfg = self.config
        return KVCache(num_layers=cfg.num_layers, num_slots=num_slots, max_len=max_len,
                       num_kv_heads=cfg.num_kv_heads, head_dim=cfg.head_dim, dtype=param.dtype, device=param.device)
