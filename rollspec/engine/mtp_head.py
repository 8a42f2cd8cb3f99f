"""Multi-token-prediction heads stored with the policy checkpoint.

Layout (our definition; DeepSeek-V3's MTP with the transformer block replaced by a gated MLP,
so a head keeps no KV cache): config.json says `num_nextn_predict_layers: n`; the policy's
safetensors hold, for i < n, `mtp.{i}.enorm.weight`, `mtp.{i}.hnorm.weight`,
`mtp.{i}.eh_proj.weight` [D, 2D], `mtp.{i}.mlp_norm.weight`,
`mtp.{i}.mlp.{gate,up,down}_proj.weight` and `mtp.{i}.norm.weight`. Head i maps
(state h, embedding of the next token) to a new state whose normed value the policy's LM head
reads; depth j uses head min(j, n-1), fed with the previous head's state.

Shape legend: B batch, T tokens, D hidden.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from rollspec.engine.cached_forward import cached_on, eps_tensor, gated_mlp_residual, rms_norm, rms_scale
from rollspec.engine.model import MLP, RMSNorm
from rollspec.engine.model_config import ModelConfig
from rollspec.engine.small_gemm import ProjWeight, proj_weight
from rollspec.engine.weights import hf_to_native, load_native, native_to_hf

MTP_PREFIX = "mtp."


class MTPLayer(nn.Module):
    """One head; `forward` for training, `forward_cached` for drafting."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.enorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.hnorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.eh_proj = nn.Linear(2 * cfg.hidden_size, cfg.hidden_size, bias=False)
        self.mlp_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg.hidden_size, cfg.intermediate_size)
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, state_BTD: torch.Tensor, embeds_BTD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (new state, normed state for the LM head)."""
        x_BTD = self.eh_proj(torch.cat([self.enorm(embeds_BTD), self.hnorm(state_BTD)], dim=-1))
        x_BTD = x_BTD + self.mlp(self.mlp_norm(x_BTD))
        return x_BTD, self.norm(x_BTD)

    def forward_cached(self, state_BTD: torch.Tensor, tokens_BT: torch.Tensor,
                       embedding: nn.Embedding) -> tuple[torch.Tensor, torch.Tensor]:
        """forward(state, embedding(tokens)) for generation (no gradient), with folded weights:
        eh_proj's embedding half applied to the normed vocabulary once (a [V, D] table read by
        index), norm weights folded into the next projection, each norm's scale from one
        vector_norm (see cached_forward)."""
        f = self._folded(embedding)
        B, T, D = state_BTD.shape
        state_ND = state_BTD.reshape(B * T, D)
        x_ND = torch.addcmul(F.embedding(tokens_BT.reshape(-1), f.embed_VD), f.state_DD.mm(state_ND),
                             rms_scale(state_ND, f.eps))
        x_ND = gated_mlp_residual(x_ND, f.gate_up_DI, f.down_ID, f.eps)
        return x_ND.view(B, T, D), rms_norm(x_ND, self.norm.weight, f.eps).view(B, T, D)

    def _folded(self, embedding: nn.Embedding) -> _FoldedMTP:
        sources = (self.enorm.weight, self.hnorm.weight, self.eh_proj.weight, self.mlp_norm.weight,
                   self.mlp.gate_up_proj.weight, self.mlp.down_proj.weight, embedding.weight)
        return cached_on(self, "_folded_cache", sources, lambda: self._fold(embedding.weight.detach()))

    def _fold(self, embed_VD: torch.Tensor) -> _FoldedMTP:
        D, eps = embed_VD.shape[1], self.enorm.eps
        eh_DD2 = self.eh_proj.weight.detach()
        normed_VD = F.rms_norm(embed_VD, (D,), self.enorm.weight.detach(), eps)
        return _FoldedMTP(
            embed_VD=normed_VD @ eh_DD2[:, :D].t(),
            state_DD=proj_weight((eh_DD2[:, D:] * self.hnorm.weight.detach()).t()),
            gate_up_DI=proj_weight((self.mlp.gate_up_proj.weight.detach() * self.mlp_norm.weight.detach()).t()),
            down_ID=proj_weight(self.mlp.down_proj.weight.detach().t()),
            eps=eps_tensor(eps, eh_DD2))


@dataclasses.dataclass(frozen=True, slots=True)
class _FoldedMTP:
    embed_VD: torch.Tensor  # enorm(embedding) @ eh_proj's embedding half, per vocabulary entry
    state_DD: ProjWeight  # eh_proj's state half with hnorm's weight folded in, [in, out]
    gate_up_DI: ProjWeight  # mlp_norm's weight folded in, [in, out]
    down_ID: ProjWeight
    eps: torch.Tensor


class MTPHeads(nn.Module):
    """The policy's MTP heads; `layers` mirrors the on-disk `mtp.{i}` index."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.num_mtp_layers < 1:
            raise ValueError("the policy config has no MTP heads (num_nextn_predict_layers is 0)")
        self.config = cfg
        self.layers = nn.ModuleList(MTPLayer(cfg) for _ in range(cfg.num_mtp_layers))

    def head(self, depth: int) -> MTPLayer:
        return self.layers[min(depth, len(self.layers) - 1)]

    def load_checkpoint_weights(self, extra_weights: dict[str, torch.Tensor]) -> None:
        """Load `mtp.*` tensors from the policy checkpoint (validated; nothing changes on error)."""
        as_layers = {f"model.layers.{name.removeprefix(MTP_PREFIX)}": t for name, t in extra_weights.items()
                     if name.startswith(MTP_PREFIX)}
        load_native(self, hf_to_native(as_layers, self.config))

    def checkpoint_weights(self) -> dict[str, torch.Tensor]:
        """The heads under their on-disk names (`mtp.{i}.*`)."""
        return {MTP_PREFIX + name.removeprefix("model.layers."): t for name, t in native_to_hf(self).items()}
