"""Preallocated KV cache and the per-step attention metadata that indexes it.

Shape legend: B batch rows, T new tokens per row, L keys attended, G kv heads, C = 2G (keys then
values), E head dim, N layers, S slots (cache rows), M max cached length per row.
"""

from __future__ import annotations

import dataclasses

import torch

PYTHON_BUILT_TOKENS = 256  # up to this many, positions and rows are cheaper as Python lists than as tensor ops


class KVCache:
    """Keys and values for S rows of up to M positions, allocated once.

    The live batch always occupies rows [0, B): finished rows are filled by moving the last
    live row into them, so attention reads a plain slice of the cache and never gathers.
    """

    def __init__(
        self, *, num_layers: int, num_slots: int, max_len: int, num_kv_heads: int, head_dim: int,
        dtype: torch.dtype, device: torch.device,
    ) -> None:
        shape = (num_layers, num_slots, 2 * num_kv_heads, max_len, head_dim)
        self.kv_NSCME = torch.zeros(shape, dtype=dtype, device=device)
        self.layers_SCME = self.kv_NSCME.unbind(0)  # per-layer views, made once: the tensor is never reallocated
        self.num_kv_heads = num_kv_heads
        self.num_slots = num_slots
        self.max_len = max_len
        # A HiddenStore (engine/hidden_store.py) when drafters read the policy's hidden states: every cached
        # forward writes its final hidden states there too, at the positions it writes keys and values.
        self.hidden = None

    def move_row(self, src: int, dst: int, length: int) -> None:
        """Copy the first `length` cached positions of row src into row dst."""
        self.kv_NSCME[:, dst, :, :length] = self.kv_NSCME[:, src, :, :length]

    def attended(self, batch: AttentionBatch) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """Per layer, the keys and values `batch` attends to ([B, G, L, E] views), sliced for all
        layers at once instead of four slices per layer (one as_strided each with a single layer)."""
        G = self.num_kv_heads
        if len(self.layers_SCME) == 1:
            kv_SCME = self.layers_SCME[0]
            size = (batch.row_end - batch.row_start, G, batch.kv_len, kv_SCME.shape[-1])
            strides, base = kv_SCME.stride(), kv_SCME.storage_offset() + batch.row_start * kv_SCME.stride(0)
            return ((kv_SCME.as_strided(size, strides, base),),
                    (kv_SCME.as_strided(size, strides, base + G * strides[1]),))
        live_NBCLE = self.kv_NSCME[:, batch.row_start: batch.row_end, :, : batch.kv_len]
        return live_NBCLE.narrow(2, 0, G).unbind(0), live_NBCLE.narrow(2, G, G).unbind(0)


@dataclasses.dataclass(frozen=True, slots=True)
class AttentionBatch:
    """Which cache rows a forward touches, where its new tokens go, and what each token may see.

    Row b's T new tokens are written at positions lens[b] .. lens[b]+T-1; token t attends to
    keys 0 .. lens[b]+t. Rows with fewer real tokens are right-padded: padded tokens write past
    the row's length, where nothing reads them before they are overwritten. Padding can reach
    past the cache's end when rows are very ragged; those writes are clamped onto its last
    position, which no row ever holds valid data in (callers keep real positions below it).
    `masked` is False when every token sees every key in [0, kv_len) (one token per row, rows of
    equal length: always at batch 1), which spares the masked attention. The additive mask
    itself is built on first use: the C kernels mask from the positions and never ask for it.
    """

    row_start: int
    row_end: int
    kv_len: int
    positions_BT: torch.Tensor
    rows_BT: torch.Tensor
    masked: bool
    mask_dtype: torch.dtype
    _mask_cache: list = dataclasses.field(default_factory=list, compare=False, repr=False)

    @property
    def mask_B1TL(self) -> torch.Tensor | None:
        """Additive mask [B, 1, T, kv_len] (None when not `masked`), built once per batch."""
        if not self.masked:
            return None
        if not self._mask_cache:
            self._mask_cache.append(_mask(self.positions_BT, self.kv_len, self.mask_dtype)[:, None])
        return self._mask_cache[0]

    @classmethod
    def build(cls, *, row_start: int, cache_lens: list[int], num_tokens: int, max_len: int, device: torch.device,
              dtype: torch.dtype) -> AttentionBatch:
        num_rows = len(cache_lens)
        kv_len = min(max(cache_lens) + num_tokens, max_len)
        if num_tokens == 1:  # a decode step: no padding, positions and rows from one host-to-device copy
            meta_2B = torch.tensor([cache_lens, list(range(row_start, row_start + num_rows))], device=device)
            positions_BT, rows_BT = meta_2B[:, :, None].unbind(0)
        elif num_rows * num_tokens <= PYTHON_BUILT_TOKENS:  # verify and catch-up: also one copy, lists built in Python
            positions = [n + t for n in cache_lens for t in range(num_tokens)]
            rows = [row for row in range(row_start, row_start + num_rows) for _ in range(num_tokens)]
            positions_BT, rows_BT = torch.tensor([positions, rows], device=device).view(2, num_rows, num_tokens).unbind(0)
        else:
            lens_B = torch.tensor(cache_lens, device=device)
            positions_BT = lens_B[:, None] + torch.arange(num_tokens, device=device)
            rows_BT = torch.arange(row_start, row_start + num_rows, device=device)[:, None].expand(num_rows, num_tokens)
        if max(cache_lens) + num_tokens > max_len:
            positions_BT = positions_BT.clamp(max=max_len - 1)
        full_view = num_tokens == 1 and min(cache_lens) == max(cache_lens)
        return cls(row_start, row_start + num_rows, kv_len, positions_BT, rows_BT, not full_view, dtype)

    @classmethod
    def chain(cls, *, cache_lens: list[int], num_steps: int, max_len: int, device: torch.device,
              dtype: torch.dtype) -> list[AttentionBatch]:
        """The batches of `num_steps` one-token steps over rows [0, B) starting at cache_lens, each
        one position further: a drafter's autoregressive loop, with all metadata built in one go
        rather than once per drafted token."""
        num_rows = len(cache_lens)
        first_kv_len = max(cache_lens) + 1
        lens_B = torch.tensor(cache_lens, device=device)
        positions_JB1 = (lens_B[None, :, None] + torch.arange(num_steps, device=device)[:, None, None])
        if first_kv_len + num_steps - 1 > max_len:
            positions_JB1.clamp_(max=max_len - 1)
        masked = min(cache_lens) != max(cache_lens)
        rows_B1 = torch.arange(num_rows, device=device)[:, None]
        return [cls(0, num_rows, min(first_kv_len + j, max_len), positions_JB1[j], rows_B1, masked, dtype)
                for j in range(num_steps)]


def _mask(positions_XT: torch.Tensor, kv_len: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive attention mask [..., T, kv_len]: 0 where key <= the token's position, else -inf.
    Built once per step and shared by every layer."""
    keys_L = torch.arange(kv_len, device=positions_XT.device)
    mask_XTL = torch.zeros((*positions_XT.shape, kv_len), dtype=dtype, device=positions_XT.device)
    return mask_XTL.masked_fill_(keys_L > positions_XT[..., None], float("-inf"))
