"""The policy's hidden states at every cached position of the live rows, for drafters that read them
(EAGLE's catch-up, MTP). The policy's cached forward writes them (KVCache.hidden): in the C forward's
own call (kernels/layer.c decoder_forward, kernels/store.c), in torch through `write`.

Shape legend: S slots, M positions per slot, D hidden, B rows, T positions per row.
"""

from __future__ import annotations

import torch

from rollspec.engine import cpu_kernels
from rollspec.engine.kv_cache import AttentionBatch


class HiddenStore:
    """hidden_SMD[slots_S[r], i] is engine row r's final hidden state after token i. A row's states stay in
    their slot when the engine compacts its batch: moving a row swaps two slot numbers instead of copying its
    history (~12 us a retire at the zoo's sizes; rows retire nearly every step at B = 64 and in a drain)."""

    def __init__(self, *, num_slots: int, max_len: int, hidden_size: int, dtype: torch.dtype,
                 device: torch.device) -> None:
        self.hidden_SMD = torch.zeros(num_slots, max_len, hidden_size, dtype=dtype, device=device)
        # Its slots as views made once: a copy through them skips parsing `x[slot, :n]`.
        self._hidden_MD = self.hidden_SMD.unbind(0)
        self.slots_S = torch.arange(num_slots)  # row r's slot; on the host, where the kernels index by it
        self._slot_of_row = self.slots_S.numpy()  # the same memory: a swap here is ~0.3 us, through torch ~3 us
        # The kernels' arguments (store, slot stride, slots), none of which ever moves; None: they do not apply.
        fits = dtype is torch.float32 and self.hidden_SMD.is_cpu
        self.kernel_args = (self.hidden_SMD.data_ptr(), self.hidden_SMD.stride(0), self.slots_S.data_ptr()) \
            if fits else None

    def slots_B(self, num_rows: int) -> torch.Tensor:
        """The slots of rows [0, num_rows) on the store's device."""
        slots_B = self.slots_S[:num_rows]
        return slots_B if self.hidden_SMD.is_cpu else slots_B.to(self.hidden_SMD.device)

    def move_row(self, src: int, dst: int) -> None:
        """Row src's states become row dst's; dst's slot goes to src (the engine moves a live row into a
        finished one's place, and src is free afterwards)."""
        slots = self._slot_of_row
        slots[src], slots[dst] = slots[dst], slots[src]

    def copy_prefix(self, src: int, dst: int, length: int) -> None:
        """Row dst's first `length` states := row src's (a prompt shared without a prefill): one C call where it
        applies (~6 us against ~9 through torch)."""
        from_slot, to_slot = int(self._slot_of_row[src]), int(self._slot_of_row[dst])
        if cpu_kernels.active and self.kernel_args is not None:
            store_ptr, slot_stride, _ = self.kernel_args
            cpu_kernels.library().copy_states(  # type: ignore[union-attr]
                self.hidden_SMD.shape[2], store_ptr, slot_stride, from_slot, to_slot, length)
            return
        self._hidden_MD[to_slot][:length].copy_(self._hidden_MD[from_slot][:length])

    def write(self, batch: AttentionBatch, hidden_BTD: torch.Tensor) -> None:
        """The states of the positions `batch` processed (the torch forward's; the C forward writes them itself)."""
        self.hidden_SMD.index_put_((self.slots_B(batch.row_end)[batch.rows_BT], batch.positions_BT), hidden_BTD)
