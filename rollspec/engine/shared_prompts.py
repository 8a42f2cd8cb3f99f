"""Which of the requests admitted together need their own prefill: a GRPO group's samples share one
prompt, and a prompt's KV rows, hidden states and first-token distribution are the same for every
row that holds it (the forward is row-independent), so it is prefilled once and its cache rows copied.

On the zoo's tasks (~18-token prompts, ~11-token answers) prefill is about half a plain rollout's
compute at large batches; with groups of 8 it falls to an eighth of that.
"""

from __future__ import annotations

from rollspec.engine.sequence import Request


def prefill_plan(requests: list[Request], *, share: bool) -> tuple[list[Request], int, list[int]]:
    """(the requests reordered with one of each distinct prompt first, how many of them to prefill,
    for each position the position of the prefilled request whose prompt it holds)."""
    if not share or len(requests) < 2:
        return requests, len(requests), list(range(len(requests)))
    first: dict[tuple[int, ...], int] = {}
    unique, repeats = [], []
    for request in requests:
        prompt = tuple(request.prompt_ids)
        if prompt in first:
            repeats.append((request, first[prompt]))
        else:
            first[prompt] = len(unique)
            unique.append(request)
    if not repeats:
        return requests, len(requests), list(range(len(requests)))
    ordered = unique + [request for request, _ in repeats]
    return ordered, len(unique), list(range(len(unique))) + [source for _, source in repeats]
