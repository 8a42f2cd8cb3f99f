"""The Drafter protocol and the per-step context the engine hands to it.

Shape legend: B live rows, S slots, M cached positions per row, K drafted tokens, V vocab, D hidden.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Protocol

import torch

from rollspec.engine.sampler import SamplingTensors


@dataclasses.dataclass(frozen=True, slots=True)
class DraftContext:
    """What a drafter may read at one step. Row b's context is tokens_BM[b, :context_lens[b]];
    its last token is pending (not yet in the policy's cache). hidden_SMD[hidden_slots_B[b], i] is the
    policy's final hidden state after token i, valid for i < context_lens[b] - 1 (both None unless the
    drafter asked for hidden states): rows keep their states in slots that follow them when the batch is
    compacted (engine/hidden_store.py)."""

    tokens_BM: torch.Tensor
    context_lens: list[int]
    token_lists: list[list[int]]
    group_ids: list[str | None]
    hidden_SMD: torch.Tensor | None
    hidden_slots_B: torch.Tensor | None  # int64
    sampling: SamplingTensors
    draw_uniforms: Callable[[int], torch.Tensor]  # n -> [B, n] uniforms from each row's own generator

    @property
    def num_rows(self) -> int:
        return len(self.context_lens)


@dataclasses.dataclass(frozen=True, slots=True)
class Proposal:
    """k drafted tokens per row and the processed distributions they were drawn from
    (None for deterministic drafters: q is one-hot at the drafted token)."""

    tokens_BK: torch.Tensor
    q_probs_BKV: torch.Tensor | None


class Drafter(Protocol):
    """Proposes tokens; keeps whatever per-row state it needs in rows aligned with the engine's.

    The engine calls `propose` before a verify step and `commit` after it with each row's new
    committed length (tokens now in the policy's cache), so cached draft state past the accepted
    prefix can be dropped. Rows move when the engine compacts its batch (`move_row`) and are
    reset when a new sequence takes them (`reset_row`).

    `catch_up_tokens` tells the depth policy, before it picks k, how wide the catch-up forward of
    the next `propose` is: the most context tokens any row holds that the drafter has not yet run
    through its own layers (rows are padded to the widest). After plain steps or an admission it
    grows with every token emitted, and the first speculative step pays for all of it.
    """

    name: str
    version: int
    uses_policy_hidden: bool

    def propose(self, ctx: DraftContext, k: int) -> Proposal: ...

    def catch_up_tokens(self, context_lens: list[int]) -> int: ...

    def commit(self, committed_lens: list[int]) -> None: ...

    def reset_row(self, row: int) -> None: ...

    def move_row(self, src: int, dst: int) -> None: ...

    def finish_row(self, row: int, group_id: str | None, token_ids: list[int]) -> None: ...

    def update(self, weights: dict[str, torch.Tensor], version: int) -> None: ...
