"""Which of the requests being admitted need their own prefill: a GRPO group's samples share one
prompt, and a prompt's KV rows, hidden states and first-token distribution are the same for every
row that holds it (the forward is row-independent), so it is prefilled once and its cache rows copied,
from a row admitted in the same step or from a live row that prefilled it under the same weights.

On the zoo's tasks (~18-token prompts, ~11-token answers) prefill is about half a plain rollout's
compute at large batches; with groups of 8 it falls to an eighth of that.
"""

from __future__ import annotations

from rollspec.engine.sequence import Request


def prefill_plan(requests: list[Request], start: int, live: dict[tuple[int, ...], int] | None,
                 ) -> tuple[list[Request], int, list[int]]:
    """(the requests in row order from row `start`: first one of each prompt no row holds, then the
    rest; how many of them to prefill; for each, the row whose prompt cache it gets: its own for the
    prefilled ones). `live` maps the prompts of rows that may be copied to their row; None: no sharing."""
    if live is None:
        return requests, len(requests), list(range(start, start + len(requests)))
    first: dict[tuple[int, ...], int] = {}
    fresh: list[Request] = []
    shared: list[tuple[Request, int]] = []
    for request in requests:
        prompt = tuple(request.prompt_ids)
        if prompt in live:
            shared.append((request, live[prompt]))
        elif prompt in first:
            shared.append((request, start + first[prompt]))
        else:
            first[prompt] = len(fresh)
            fresh.append(request)
    ordered = fresh + [request for request, _ in shared]
    return ordered, len(fresh), list(range(start, start + len(fresh))) + [row for _, row in shared]
