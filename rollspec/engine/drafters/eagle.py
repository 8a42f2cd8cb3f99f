"""EAGLE drafter: the EAGLE head runs on the policy's hidden states with its own one-layer KV cache.

Shape legend: B rows, T tokens, K drafted, V vocab, D hidden.
"""

from __future__ import annotations

import torch

from rollspec.engine.drafters import eagle_chain
from rollspec.engine.drafters.base import DraftContext, Proposal
from rollspec.engine.drafters.catch_up import SplitMemo, cat_groups, catch_up_width
from rollspec.engine.drafters.draws import DraftDraws
from rollspec.engine.eagle_head import EagleHead
from rollspec.engine.kv_cache import AttentionBatch
from rollspec.engine.model import Decoder
from rollspec.engine.weights import hf_to_native, load_native


class EagleDrafter:
    """Catch-up feeds the head every (policy feature f_i, next token x_{i+1}) pair committed since
    the last proposal; drafting then chains the head's own predicted features. Cache positions
    holding predicted features are never kept: the next catch-up overwrites them with real ones.
    Catch-up runs as one forward, or two over contiguous row groups when that saves padding
    (see drafters/catch_up.py)."""

    name = "eagle"
    uses_policy_hidden = True
    kernels = True  # catch-up and chain through drafters/eagle_chain.py where it applies; False: the Python path

    def __init__(self, head: EagleHead, policy: Decoder, *, num_slots: int, max_len: int, version: int = 0) -> None:
        if head.config.hidden_size != policy.config.hidden_size:
            raise ValueError(f"EAGLE head hidden size {head.config.hidden_size} != policy's "
                             f"{policy.config.hidden_size}")
        self.head, self.policy = head, policy
        self.version = version
        self.cache = head.new_cache(num_slots=num_slots, max_len=max_len)
        self.num_real = [0] * num_slots  # pairs with real policy features in row b's head cache
        self._split = SplitMemo()  # the step's split, asked by catch_up_tokens and propose

    def propose(self, ctx: DraftContext, k: int) -> Proposal:
        B, device = ctx.num_rows, ctx.tokens_BM.device
        lens = self.num_real[:B]
        targets = [n - 1 for n in ctx.context_lens]  # pairs exist for positions 0 .. context_len - 2
        num_new = [t - n for t, n in zip(targets, lens)]
        j = self._split(num_new)
        groups = [(0, j), (j, B)] if j else [(0, B)]
        kernel = eagle_chain.kernel_head(self.head, self.policy.embed_tokens, self.cache) if self.kernels else None
        feature_B1D = None if kernel is None else eagle_chain.catch_up(kernel, ctx, lens, num_new, groups)
        if feature_B1D is None:
            feature_B1D = cat_groups([self._catch_up(ctx, lens, num_new, start, end) for start, end in groups])
        self.num_real[:B] = targets
        draws = DraftDraws(self.policy.lm_head, ctx.sampling, ctx.draw_uniforms(k))
        if kernel is not None and eagle_chain.chain(kernel, feature_B1D, targets, draws):
            return Proposal(draws.tokens_BK, draws.q_BKV)
        steps = AttentionBatch.chain(cache_lens=targets, num_steps=k - 1, max_len=self.cache.max_len, device=device,
                                     dtype=self.cache.kv_NSCME.dtype)
        for j in range(k):
            token_B1 = draws.draw(j, feature_B1D)
            if j + 1 < k:
                feature_B1D = self.head.forward_cached(token_B1, feature_B1D, self.policy.embed_tokens,
                                                       cache=self.cache, batch=steps[j])
        return Proposal(draws.tokens_BK, draws.q_BKV)

    def catch_up_tokens(self, context_lens: list[int]) -> int:
        return catch_up_width([n - 1 - real for n, real in zip(context_lens, self.num_real)], self._split)

    def _catch_up(self, ctx: DraftContext, lens: list[int], num_new: list[int], start: int, end: int) -> torch.Tensor:
        """Feed rows [start, end) their new (feature, token) pairs; returns each row's last output feature."""
        device = ctx.tokens_BM.device
        width = max(num_new[start:end])
        rows_B = torch.arange(start, end, device=device)
        positions_BT = torch.tensor(lens[start:end], device=device)[:, None] + torch.arange(width, device=device)
        positions_BT = positions_BT.clamp(max=ctx.tokens_BM.shape[1] - 2)
        features_BTD = ctx.hidden_SMD[ctx.hidden_slots_B[start:end, None], positions_BT]
        tokens_BT = ctx.tokens_BM[start:end].gather(1, positions_BT + 1)
        batch = self._batch(lens[start:end], width, device, row_start=start)
        out_BTD = self.head.forward_cached(tokens_BT, features_BTD, self.policy.embed_tokens, cache=self.cache,
                                           batch=batch)
        return out_BTD[rows_B - start, torch.tensor(num_new[start:end], device=device) - 1][:, None]

    def _batch(self, lens: list[int], num_tokens: int, device: torch.device, row_start: int = 0) -> AttentionBatch:
        return AttentionBatch.build(row_start=row_start, cache_lens=lens, num_tokens=num_tokens,
                                    max_len=self.cache.max_len, device=device, dtype=self.cache.kv_NSCME.dtype)

    def commit(self, committed_lens: list[int]) -> None:
        pass  # only real pairs are counted in num_real; predicted ones are overwritten next time

    def reset_row(self, row: int) -> None:
        self.num_real[row] = 0

    def move_row(self, src: int, dst: int) -> None:
        if self.num_real[src]:  # a row admitted while decoding plainly holds nothing yet: ~6 us of views saved
            self.cache.move_row(src, dst, self.num_real[src])
        self.num_real[dst], self.num_real[src] = self.num_real[src], 0

    def finish_row(self, row: int, group_id: str | None, token_ids: list[int]) -> None:
        self.num_real[row] = 0

    def update(self, weights: dict[str, torch.Tensor], version: int) -> None:
        """New head weights under their on-disk names (`fc.weight`, `layers.0.*`)."""
        load_native(self.head, hf_to_native({f"model.{n}": t for n, t in weights.items()}, self.head.config))
        self.version = version
