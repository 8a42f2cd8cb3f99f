"""MTP drafter: the policy checkpoint's own multi-token-prediction heads, chained from the
policy's last hidden state. Stateless per row (no cache).

Shape legend: B rows, K drafted, V vocab, D hidden.
"""

from __future__ import annotations

import torch

from rollspec.engine.drafters import mtp_chain
from rollspec.engine.drafters.base import DraftContext, Proposal
from rollspec.engine.drafters.draws import DraftDraws
from rollspec.engine.model import Decoder
from rollspec.engine.mtp_head import MTPHeads


class MTPDrafter:
    """Depth j: state_{j+1} = head_j(state_j, embed(x_j)), with state_0 the policy's hidden state
    before the pending token and x_0 the pending token; draft j+1 is sampled from LM head(norm(state))."""

    name = "mtp"
    uses_policy_hidden = True
    kernels = True  # the chain through drafters/mtp_chain.py where it applies; False: the Python loop

    def __init__(self, heads: MTPHeads, policy: Decoder, *, version: int = 0) -> None:
        self.heads, self.policy = heads, policy
        self.version = version

    def propose(self, ctx: DraftContext, k: int) -> Proposal:
        B, device = ctx.num_rows, ctx.tokens_BM.device
        rows_B = torch.arange(B, device=device)
        pending_B = torch.tensor(ctx.context_lens, device=device) - 1
        state_BD = ctx.hidden_SMD[ctx.hidden_slots_B, pending_B - 1]
        token_B = ctx.tokens_BM[rows_B, pending_B]
        draws = DraftDraws(self.policy.lm_head, ctx.sampling, ctx.draw_uniforms(k))
        if self.kernels and mtp_chain.chain(self.heads, self.policy, state_BD, token_B, draws):
            return Proposal(draws.tokens_BK, draws.q_BKV)
        state_B1D, token_B1 = state_BD[:, None], token_B[:, None]
        for j in range(k):
            state_B1D, normed_B1D = self.heads.head(j).forward_cached(state_B1D, token_B1, self.policy.embed_tokens)
            token_B1 = draws.draw(j, normed_B1D)
        return Proposal(draws.tokens_BK, draws.q_BKV)

    def catch_up_tokens(self, context_lens: list[int]) -> int:
        return 0  # reads the policy's hidden states directly: nothing to catch up on

    def commit(self, committed_lens: list[int]) -> None:
        pass

    def reset_row(self, row: int) -> None:
        pass

    def move_row(self, src: int, dst: int) -> None:
        pass

    def finish_row(self, row: int, group_id: str | None, token_ids: list[int]) -> None:
        pass

    def update(self, weights: dict[str, torch.Tensor], version: int) -> None:
        """New MTP weights under their checkpoint names (`mtp.{i}.*`)."""
        self.heads.load_checkpoint_weights(weights)
        self.version = version
