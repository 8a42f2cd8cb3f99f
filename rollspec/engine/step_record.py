"""What a step leaves for the next ones (Engine._store) as one C call (kernels/store.c): the token that follows each
processed position and, for drafters that read them, the policy's hidden state there. Through torch that is two
index_put_ calls, ~30 us a decode step at B = 64 with the hidden states (scattered 768-byte rows of a 13 MB store),
~5 us without.

Shape legend: S rows (slots), M positions per row, B rows, T positions per row, D hidden.
"""

from __future__ import annotations

import torch

from rollspec.engine import cpu_kernels
from rollspec.engine.hidden_store import HiddenStore
from rollspec.engine.kv_cache import AttentionBatch

_F32 = torch.float32


class StepRecord:
    """Writes into the engine's token rows and hidden store, both allocated once and never moved: their checks and
    pointers (the hidden store's slots too) are taken here once, not at every step."""

    def __init__(self, tokens_SM: torch.Tensor, hidden: HiddenStore | None) -> None:
        self.hidden = hidden
        M = tokens_SM.shape[1]
        fits = tokens_SM.dtype is torch.long and tokens_SM.is_cpu and tokens_SM.stride(1) == 1
        self._tokens = (tokens_SM.data_ptr(), tokens_SM.stride(0), M) if fits else None
        self._store, self._hidden_size = (None, 0, None), 0
        if hidden is not None:
            store_SMD = hidden.hidden_SMD
            if not (store_SMD.dtype is _F32 and store_SMD.is_cpu and store_SMD.is_contiguous()
                    and store_SMD.shape[1] == M):
                self._tokens = None
            self._store = (store_SMD.data_ptr(), store_SMD.stride(0), hidden.slots_S.data_ptr())
            self._hidden_size = store_SMD.shape[2]

    def write(self, batch: AttentionBatch, next_BT: torch.Tensor, hidden_BTD: torch.Tensor) -> bool:
        """tokens[row, position + 1] = next_BT and, with a hidden store, each processed position's hidden state;
        False, nothing written, where the call does not apply (the caller then writes through torch, which raises
        where the C call refused a position outside the rows)."""
        if not cpu_kernels.active or self._tokens is None:
            return False
        positions_BT = batch.positions_BT
        B, T = positions_BT.shape
        if not (positions_BT.dtype is torch.long and next_BT.dtype is torch.long and next_BT.is_contiguous()
                and next_BT.shape == (B, T)):
            return False
        hidden, D = self.hidden, self._hidden_size
        if hidden is not None and not (hidden_BTD.dtype is _F32 and hidden_BTD.is_contiguous()
                                       and hidden_BTD.shape == (B, T, D)):
            return False
        status = cpu_kernels.library().store_step(  # type: ignore[union-attr]
            B, T, D, batch.row_start, positions_BT.data_ptr(), positions_BT.stride(0), positions_BT.stride(1),
            next_BT.data_ptr(), *self._tokens,
            None if hidden is None else hidden_BTD.data_ptr(), *self._store)
        return status == 0
