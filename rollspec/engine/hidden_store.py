"""The policy's hidden states at every cached position of the live rows, for drafters that read them
(EAGLE's catch-up, MTP).

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
        # write_prompts' sources and lengths, filled through numpy (~1 us; a new tensor is ~5-10 us), and the
        # kernel's pointers, none of which ever moves.
        args_2S = torch.zeros(2, num_slots, dtype=torch.long)
        self._prompt_args = args_2S.numpy()
        self._pointers = (args_2S.data_ptr(), args_2S.data_ptr() + 8 * num_slots, self.hidden_SMD.data_ptr(),
                          self.hidden_SMD.stride(0), self.slots_S.data_ptr())

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
        """Row dst's first `length` states := row src's (a prompt shared without a prefill)."""
        self.write_prompts(dst, self._hidden_MD[self._slot_of_row[src]][None], [0], [length])

    def write_prompts(self, row_start: int, hidden_BTD: torch.Tensor, sources: list[int], lengths: list[int]) -> None:
        """Row row_start + b's first lengths[b] states := those of hidden_BTD[sources[b]], a prefill's output
        (sources[b] < 0: none; the row copies its prompt from a live row). One C call where it applies: rows
        sharing a prompt read it from the fresh output, not from another slot, and padding is not written."""
        store_SMD = self.hidden_SMD
        B, (_, T, D) = len(sources), hidden_BTD.shape
        if (cpu_kernels.active and store_SMD.dtype is torch.float32 and store_SMD.is_cpu and hidden_BTD.dtype
                is torch.float32 and hidden_BTD.is_contiguous() and max(lengths) <= store_SMD.shape[1]):
            args = self._prompt_args
            args[0, :B], args[1, :B] = sources, lengths
            sources_ptr, lengths_ptr, store_ptr, store_stride, slots_ptr = self._pointers
            cpu_kernels.library().store_prompts(  # type: ignore[union-attr]
                B, T, D, row_start, sources_ptr, lengths_ptr, hidden_BTD.data_ptr(), store_ptr, store_stride, slots_ptr)
            return
        for b, (src, length) in enumerate(zip(sources, lengths)):
            if src >= 0:
                self._hidden_MD[self._slot_of_row[row_start + b]][:length].copy_(hidden_BTD[src, :length])

    def write(self, batch: AttentionBatch, hidden_BTD: torch.Tensor) -> None:
        """The states of the positions `batch` processed (torch; engine/step_record.py does it in C)."""
        self.hidden_SMD.index_put_((self.slots_B(batch.row_end)[batch.rows_BT], batch.positions_BT), hidden_BTD)
