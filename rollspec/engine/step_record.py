"""The token that follows each position a step processed, written into the engine's token rows (Engine._store)
by one C call (kernels/store.c store_tokens) where it applies: ~1 us of C against ~5 us of torch indexing (an
add and an index_put_). The step's hidden states are written by the policy's forward (engine/hidden_store.py).

Shape legend: S rows, M positions per row, B rows, T positions per row.
"""

from __future__ import annotations

import torch

from rollspec.engine import cpu_kernels
from rollspec.engine.kv_cache import AttentionBatch


class StepRecord:
    """Writes into the engine's token rows, allocated once and never moved: checks and pointers are taken once."""

    def __init__(self, tokens_SM: torch.Tensor) -> None:
        fits = tokens_SM.dtype is torch.long and tokens_SM.is_cpu and tokens_SM.stride(1) == 1
        self._tokens = (tokens_SM.data_ptr(), tokens_SM.stride(0), tokens_SM.shape[1]) if fits else None

    def write(self, batch: AttentionBatch, next_BT: torch.Tensor) -> bool:
        """tokens[row, position + 1] = next_BT for the positions `batch` processed; False, nothing written, where
        the call does not apply (the caller then writes through torch, which raises where the C call refused a
        position outside the rows)."""
        if not cpu_kernels.active or self._tokens is None:
            return False
        positions_BT = batch.positions_BT
        B, T = positions_BT.shape
        if not (positions_BT.dtype is torch.long and next_BT.dtype is torch.long and next_BT.is_contiguous()
                and next_BT.shape == (B, T)):
            return False
        status = cpu_kernels.library().store_tokens(  # type: ignore[union-attr]
            B, T, batch.row_start, positions_BT.data_ptr(), positions_BT.stride(0), positions_BT.stride(1),
            next_BT.data_ptr(), *self._tokens)
        return status == 0
