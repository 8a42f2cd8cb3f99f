"""EAGLE-style draft head (Li et al. 2024, EAGLE-1 layout): predicts the policy's next hidden
state from its current one and the embedding of the token that follows it; the policy's own
LM head turns that prediction into a distribution.

Shape legend: B batch, T tokens, D hidden. Stored on disk under `fc.weight` and `layers.0.*`
(Hugging Face names), the layout EAGLE checkpoints use; embeddings and LM head are the policy's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rollspec.engine.cached_forward import LayerInputs, cached_on, layer_forward, weight_t
from rollspec.engine.kv_cache import AttentionBatch, KVCache
from rollspec.engine.model import DecoderLayer, Rotary
from rollspec.engine.model_config import ModelConfig
from rollspec.engine.small_gemm import ProjWeight, proj_weight


class EagleHead(nn.Module):
    """fc(concat(embed(x_{i+1}), f_i)) -> one decoder layer without input norm -> f̂_{i+1}.

    Position i holds the pair (policy feature after token i, token i+1), so its cache positions
    line up with the policy's."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.num_layers != 1:
            raise ValueError(f"an EAGLE head has exactly one decoder layer, config says {cfg.num_layers}")
        self.config = cfg
        self.fc = nn.Linear(2 * cfg.hidden_size, cfg.hidden_size, bias=False)
        self.layers = nn.ModuleList([DecoderLayer(cfg)])
        # EAGLE feeds the fused input straight into attention: the policy feature is already normed.
        self.layers[0].input_layernorm = nn.Identity()
        self.rotary = Rotary(cfg.head_dim, cfg.rope_theta, cfg.max_position_embeddings)

    def forward(self, embeds_BTD: torch.Tensor, features_BTD: torch.Tensor, *,
                positions_BT: torch.Tensor | None = None) -> torch.Tensor:
        """Training (and the oracle of forward_cached): the whole sequence, no KV cache."""
        x_BTD = self.fc(torch.cat([embeds_BTD, features_BTD], dim=-1))
        if positions_BT is None:
            positions_BT = torch.arange(x_BTD.shape[1], device=x_BTD.device)[None]
        cos, sin = self.rotary.tables(positions_BT, x_BTD.dtype)
        return self.layers[0](x_BTD, cos, sin)

    def forward_cached(self, tokens_BT: torch.Tensor, features_BTD: torch.Tensor, embedding: nn.Embedding, *,
                       cache: KVCache, batch: AttentionBatch) -> torch.Tensor:
        """forward(embedding(tokens), features) for generation over the KV cache (no gradient):
        fc's embedding half is applied to the whole vocabulary once (a cached [V, D] table), so a
        token costs one lookup and one addmm instead of embedding, cat and fc."""
        table_VD, feature_DD = self.fc_halves(embedding)
        B, T = tokens_BT.shape
        x_ND = feature_DD.addmm(F.embedding(tokens_BT.reshape(-1), table_VD), features_BTD.reshape(B * T, -1))
        return layer_forward(self.layers[0], x_ND, LayerInputs(self.rotary, cache, batch, x_ND.dtype), 0, B,
                             T).view(B, T, -1)

    def fc_halves(self, embedding: nn.Embedding) -> tuple[torch.Tensor, ProjWeight]:
        """(embedding table @ fc's embedding half, fc's feature half as [in, out]), cached on the
        head and rebuilt when fc or the embedding changes."""
        def build() -> tuple[torch.Tensor, ProjWeight]:
            D, full_DD2 = self.config.hidden_size, weight_t(self.fc)
            return torch.mm(embedding.weight.detach(), full_DD2[:D]), proj_weight(full_DD2[D:])

        return cached_on(self, "_fc_halves_cache", (self.fc.weight, embedding.weight), build)

    def new_cache(self, *, num_slots: int, max_len: int) -> KVCache:
        cfg, param = self.config, self.fc.weight
        return KVCache(num_layers=1, num_slots=num_slots, max_len=max_len, num_kv_heads=cfg.num_kv_heads,
                       head_dim=cfg.head_dim, dtype=param.dtype, device=param.device)
