"""N-gram / suffix drafter: propose what followed the longest earlier occurrence of the
context's suffix, in the sequence itself or in its prompt group's other sequences. No weights."""

from __future__ import annotations

from collections import OrderedDict

import torch

from rollspec.engine.drafters.base import DraftContext, Proposal


class _GramIndex:
    """For one token list: n-gram -> end of its most recent occurrence, for n in [min_n, max_n].
    Grams ending at the list's last position are indexed only once a token follows them, so every
    hit has a continuation."""

    __slots__ = ("tokens", "indexed_to", "grams")

    def __init__(self, tokens: list[int], min_n: int, max_n: int) -> None:
        self.tokens = tokens
        self.indexed_to = 0
        self.grams: dict[int, dict[tuple[int, ...], int]] = {n: {} for n in range(min_n, max_n + 1)}

    def catch_up(self, upto: int) -> None:
        tokens = self.tokens
        for end in range(max(self.indexed_to, 1), upto):
            for n, table in self.grams.items():
                if end >= n:
                    table[tuple(tokens[end - n: end])] = end
        self.indexed_to = max(self.indexed_to, upto)

    def lookup(self, suffix: tuple[int, ...]) -> int | None:
        return self.grams[len(suffix)].get(suffix)


class NgramDrafter:
    """Deterministic drafter (q is one-hot). The suffix of length max_n..min_n is looked up in
    the row's own context, then in its group's finished and in-flight siblings; the longest hit
    wins. Rows without a hit propose a repeat of their last token (cheaply rejected)."""

    name = "ngram"
    uses_policy_hidden = False

    def __init__(self, *, num_slots: int, min_n: int = 2, max_n: int = 5, max_groups: int = 4096) -> None:
        if not 1 <= min_n <= max_n:
            raise ValueError(f"need 1 <= min_n <= max_n, got min_n={min_n}, max_n={max_n}")
        self.min_n, self.max_n = min_n, max_n
        self.version = 0
        self._rows: list[_GramIndex | None] = [None] * num_slots
        self._finished: OrderedDict[str, list[_GramIndex]] = OrderedDict()  # LRU over groups
        self._max_groups = max_groups

    def propose(self, ctx: DraftContext, k: int) -> Proposal:
        proposals = []
        by_group: dict[str, list[int]] = {}
        for row, group in enumerate(ctx.group_ids):
            if group is not None:
                by_group.setdefault(group, []).append(row)
        for row, tokens in enumerate(ctx.token_lists):
            group = ctx.group_ids[row]
            indexes = [self._row_index(row, tokens)]
            if group is not None:
                indexes += [self._row_index(r, ctx.token_lists[r]) for r in by_group[group] if r != row]
                indexes += self._finished.get(group, [])
            for index in indexes:
                index.catch_up(len(index.tokens))
            proposals.append(self._continuation(tokens, indexes, k))
        return Proposal(torch.tensor(proposals, dtype=torch.long, device=ctx.tokens_BM.device), None)

    def _continuation(self, tokens: list[int], indexes: list[_GramIndex], k: int) -> list[int]:
        for n in range(min(self.max_n, len(tokens)), self.min_n - 1, -1):
            suffix = tuple(tokens[-n:])
            for index in indexes:
                end = index.lookup(suffix)
                if end is not None:
                    found = index.tokens[end: end + k]
                    return found + [found[-1]] * (k - len(found))
        return [tokens[-1]] * k

    def _row_index(self, row: int, tokens: list[int]) -> _GramIndex:
        index = self._rows[row]
        if index is None or index.tokens is not tokens:
            index = self._rows[row] = _GramIndex(tokens, self.min_n, self.max_n)
        return index

    def catch_up_tokens(self, context_lens: list[int]) -> int:
        return 0  # indexing new tokens is a dict update per token, negligible beside a forward

    def commit(self, committed_lens: list[int]) -> None:
        pass  # indexes only ever extend: nothing speculative is stored

    def reset_row(self, row: int) -> None:
        self._rows[row] = None

    def move_row(self, src: int, dst: int) -> None:
        self._rows[dst], self._rows[src] = self._rows[src], None

    def finish_row(self, row: int, group_id: str | None, token_ids: list[int]) -> None:
        index = self._rows[row]
        self._rows[row] = None
        if group_id is None or index is None:
            return
        index.catch_up(len(token_ids))
        self._finished.setdefault(group_id, []).append(index)
        self._finished.move_to_end(group_id)
        while len(self._finished) > self._max_groups:
            self._finished.popitem(last=False)

    def update(self, weights: dict[str, torch.Tensor], version: int) -> None:
        self.version = version
