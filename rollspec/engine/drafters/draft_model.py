"""A separate small draft model sharing the policy's tokenizer, with its own KV cache.

Shape legend: B rows, T tokens, K drafted, V vocab.
"""

from __future__ import annotations

import torch

from rollspec.engine.drafters import draft_chain
from rollspec.engine.drafters.base import DraftContext, Proposal
from rollspec.engine.drafters.catch_up import SplitMemo, cat_groups, catch_up_width
from rollspec.engine.drafters.draws import DraftDraws
from rollspec.engine.kv_cache import AttentionBatch
from rollspec.engine.model import Decoder
from rollspec.engine.weights import hf_to_native, load_native


class DraftModelDrafter:
    """Samples k tokens autoregressively from the draft model under the request's own sampling
    params, returning the processed distributions q it sampled from. Its cache lags the policy's
    by the tokens committed since the last proposal; those are fed first (catch-up), in one forward
    or two over contiguous row groups when that saves padding (see drafters/catch_up.py)."""

    name = "draft_model"
    uses_policy_hidden = False
    kernels = True  # the draft chain through drafters/draft_chain.py where it applies; False: the Python loop

    def __init__(self, model: Decoder, *, num_slots: int, max_len: int, version: int = 0) -> None:
        self.model = model
        self.version = version
        self.cache = model.new_cache(num_slots=num_slots, max_len=max_len)
        self.num_cached = [0] * num_slots  # row b's cache holds its first num_cached context tokens
        self._split = SplitMemo()  # the step's split, asked by catch_up_tokens and propose

    def propose(self, ctx: DraftContext, k: int) -> Proposal:
        B = ctx.num_rows
        lens = self.num_cached[:B]
        num_new = [total - cached for total, cached in zip(ctx.context_lens, lens)]
        device = ctx.tokens_BM.device
        j = self._split(num_new)
        groups = [(0, j), (j, B)] if j else [(0, B)]
        hidden_B1D = draft_chain.catch_up(self.model, self.cache, ctx, lens, num_new, groups) if self.kernels else None
        if hidden_B1D is None:
            hidden_B1D = cat_groups([self._catch_up(ctx, lens, num_new, start, end) for start, end in groups])
        draws = DraftDraws(self.model.lm_head, ctx.sampling, ctx.draw_uniforms(k))
        if self.kernels and draft_chain.run(self.model, self.cache, hidden_B1D, ctx.context_lens, draws):
            self.num_cached[:B] = [n + k - 1 for n in ctx.context_lens]
            return Proposal(draws.tokens_BK, draws.q_BKV)
        # The last draft never needs to be fed: k - 1 one-token steps.
        steps = AttentionBatch.chain(cache_lens=ctx.context_lens, num_steps=k - 1, max_len=self.cache.max_len,
                                     device=device, dtype=self.cache.kv_NSCME.dtype)
        for j in range(k):
            token_B1 = draws.draw(j, hidden_B1D)
            if j + 1 < k:
                hidden_B1D = self.model(token_B1, cache=self.cache, batch=steps[j])
        self.num_cached[:B] = [n + k - 1 for n in ctx.context_lens]
        return Proposal(draws.tokens_BK, draws.q_BKV)

    def catch_up_tokens(self, context_lens: list[int]) -> int:
        return catch_up_width([n - cached for n, cached in zip(context_lens, self.num_cached)], self._split)

    def _catch_up(self, ctx: DraftContext, lens: list[int], num_new: list[int], start: int, end: int) -> torch.Tensor:
        """Feed rows [start, end) the context tokens their cache lacks; returns each row's last hidden state."""
        device = ctx.tokens_BM.device
        width = max(num_new[start:end])
        positions_BT = torch.tensor(lens[start:end], device=device)[:, None] + torch.arange(width, device=device)
        inputs_BT = ctx.tokens_BM[start:end].gather(1, positions_BT.clamp(max=ctx.tokens_BM.shape[1] - 1))
        batch = self._batch(lens[start:end], width, device, row_start=start)
        hidden_BTD = self.model(inputs_BT, cache=self.cache, batch=batch)
        last_B = torch.tensor(num_new[start:end], device=device) - 1
        return hidden_BTD[torch.arange(end - start, device=device), last_B][:, None]

    def _batch(self, lens: list[int], num_tokens: int, device: torch.device, row_start: int = 0) -> AttentionBatch:
        return AttentionBatch.build(row_start=row_start, cache_lens=lens, num_tokens=num_tokens,
                                    max_len=self.cache.max_len, device=device, dtype=self.cache.kv_NSCME.dtype)

    def commit(self, committed_lens: list[int]) -> None:
        # Cached drafts past the accepted prefix are wrong; everything before it was verified.
        for row, committed in enumerate(committed_lens):
            self.num_cached[row] = min(self.num_cached[row], committed)

    def reset_row(self, row: int) -> None:
        self.num_cached[row] = 0

    def move_row(self, src: int, dst: int) -> None:
        if self.num_cached[src]:  # a row admitted while decoding plainly holds nothing yet: ~6 us of views saved
            self.cache.move_row(src, dst, self.num_cached[src])
        self.num_cached[dst], self.num_cached[src] = self.num_cached[src], 0

    def finish_row(self, row: int, group_id: str | None, token_ids: list[int]) -> None:
        self.num_cached[row] = 0

    def update(self, weights: dict[str, torch.Tensor], version: int) -> None:
        """Load new draft weights (Hugging Face names). Cached keys came from the old weights:
        they stay (a stale cache only lowers acceptance, never correctness)."""
        load_native(self.model, hf_to_native(weights, self.model.config))
        self.version = version
