"""Where to split a drafter's catch-up forward so rows with long backlogs do not pad every row.

After an admission the new rows carry their whole prompt while the others carry one or two
tokens; a single forward padded to the widest row would run B x prompt tokens. Admitted rows
join at the end of the batch (rows stay [0, B), see Engine._admit), so one split point into
two contiguous groups takes most of that padding away.
"""

from __future__ import annotations

import torch

MIN_SAVING = 0.25  # a second forward has its own fixed cost: split only for a clear saving in padded tokens


def split_point(num_new: list[int]) -> int:
    """Row index j splitting the catch-up into rows [0, j) and [j, B), or 0 for one forward over all rows."""
    num_rows, widest = len(num_new), max(num_new)
    if min(num_new) >= (1.0 - MIN_SAVING) * widest:  # every split pads at least B * min: runs every step, be quick
        return 0
    single = num_rows * widest
    prefix_max, best, best_j = 0, single, 0
    suffix_max = [0] * (num_rows + 1)
    for row in range(num_rows - 1, -1, -1):
        suffix_max[row] = max(suffix_max[row + 1], num_new[row])
    for j in range(1, num_rows):
        prefix_max = max(prefix_max, num_new[j - 1])
        padded = j * prefix_max + (num_rows - j) * suffix_max[j]
        if padded < best:
            best, best_j = padded, j
    return best_j if best <= (1.0 - MIN_SAVING) * single else 0


class SplitMemo:
    """split_point of the last backlog asked: a speculative step asks it for the depth policy's catch-up width
    (Drafter.catch_up_tokens) and again in propose, on the same rows (~2-5 us each inside the engine at B = 4, where
    most steps admit a row with its prompt)."""

    __slots__ = ("_num_new", "_point")

    def __init__(self) -> None:
        self._num_new: list[int] | None = None
        self._point = 0

    def __call__(self, num_new: list[int]) -> int:
        if num_new != self._num_new:
            self._num_new, self._point = list(num_new), split_point(num_new)
        return self._point


def catch_up_width(num_new: list[int], split: SplitMemo | None = None) -> int:
    """Tokens per row the catch-up runs, padding included: its padded tokens over the batch size, rounded up."""
    if not num_new:
        return 0
    j = split(num_new) if split is not None else split_point(num_new)
    if j == 0:
        return max(num_new)
    padded = j * max(num_new[:j]) + (len(num_new) - j) * max(num_new[j:])
    return -(-padded // len(num_new))


def cat_groups(outputs: list[torch.Tensor]) -> torch.Tensor:
    """The row groups' outputs as one batch (no copy when there is one group, the usual case)."""
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)
