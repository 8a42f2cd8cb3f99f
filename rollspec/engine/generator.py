"""The interface every generation backend offers the rollout actor: the built-in `Engine` and the
vLLM backend (`rollspec.backends.vllm_backend.VllmGenerator`) both satisfy it.

Contract shared by all backends:
- requests carry token ids in and completions carry token ids, the policy's logprob of each
  emitted token (under the processed distribution it was sampled from; greedy rows report the
  untempered log-softmax), the finish reason, the policy and draft versions that produced every
  token, and per-position draft / acceptance counters (`SpecStats`);
- weights are swapped only between generations (`has_unfinished()` is False), under Hugging Face
  names; a bad update raises `WeightUpdateError` and the last good version keeps serving;
- versions only go up unless `restore=True` marks an explicit checkpoint restore.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from rollspec.engine.sequence import Completion, Request


@runtime_checkable
class Generator(Protocol):
    """A continuous-batching generator with versioned policy and draft weights."""

    policy_version: int

    @property
    def draft_version(self) -> int:
        """Version of the drafter's weights (0 without a drafter or for weightless drafters)."""

    @property
    def max_batch_size(self) -> int:
        """Sequences it generates at once; more requests wait in its queue."""

    def num_unfinished(self) -> int:
        """Requests added and not yet returned (running plus waiting)."""

    def add_request(self, request: Request) -> None:
        """Queue a request; raises InvalidRequestError / PromptTooLongError on bad input."""

    def has_unfinished(self) -> bool:
        """True while any added request has not been returned by `step`."""

    def step(self) -> list[Completion]:
        """Advance every running sequence; returns the requests that finished."""

    def generate(self, requests: list[Request]) -> list[Completion]:
        """Run requests to completion; results in the order given."""

    def update_policy(self, weights_hf: dict[str, torch.Tensor], version: int, *, restore: bool = False) -> None:
        """Swap the policy's weights in place (Hugging Face names)."""

    def update_draft(self, weights: dict[str, torch.Tensor], version: int, *, restore: bool = False) -> None:
        """Swap the drafter's weights in place (the names its checkpoint directory uses)."""


def run_to_completion(generator: Generator, requests: list[Request]) -> list[Completion]:
    """Add `requests`, step until every one has finished, and return them in the order given:
    `generate` of every backend."""
    for request in requests:
        generator.add_request(request)
    done: dict[str, Completion] = {}
    while generator.has_unfinished():
        done.update((c.request_id, c) for c in generator.step())
    return [done[r.request_id] for r in requests]
