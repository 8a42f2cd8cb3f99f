"""Prompt groups by index: the controller's prompt stream over a TaskMixture.

Group i is a pure function of (mixture config, sample seed, dataset size, i), so a resumed run
regenerates exactly the prompts (and sampling seeds) its checkpoint says are still outstanding.

With a dataset size N the stream is epochs over the mixture's first N prompts, each epoch in its
own shuffled order (as RL on a fixed prompt set is usually run); every visit is a new group with its
own id and sampling seed. With N = 0 every group is a fresh prompt.
"""

import functools
import hashlib
import random
import time

from rollspec.actors.messages import PromptGroup, prompt_id_of
from rollspec.rl.mixture import TaskMixture
from rollspec.rl.template import encode_prompt

SEED_BITS = 62


def sample_seed(seed: int, prompt_index: int) -> int:
    """Seed of sample 0 of prompt `prompt_index` (sample j uses this + j); leaves room below 2**62."""
    digest = hashlib.blake2b(f"rollspec-sample/{seed}/{prompt_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - SEED_BITS + 1)


@functools.lru_cache(maxsize=4)
def _epoch_order(dataset_size: int, seed: int, epoch: int) -> tuple[int, ...]:
    order = list(range(dataset_size))
    random.Random(f"rollspec-epoch/{seed}/{epoch}").shuffle(order)
    return tuple(order)


def dataset_position(prompt_index: int, dataset_size: int, seed: int) -> int:
    """The mixture index that stream position `prompt_index` visits: itself for dataset_size 0,
    else position prompt_index % dataset_size of that epoch's shuffled order."""
    if dataset_size == 0:
        return prompt_index
    epoch, offset = divmod(prompt_index, dataset_size)
    return _epoch_order(dataset_size, seed, epoch)[offset]


class PromptSource:
    """Builds the PromptGroup for any index of the prompt stream."""

    def __init__(self, mixture: TaskMixture, *, group_size: int, seed: int, dataset_size: int = 0):
        if dataset_size < 0:
            raise ValueError(f"dataset_size must be >= 0, got {dataset_size}")
        self._mixture = mixture
        self._group_size = group_size
        self._seed = seed
        self._dataset_size = dataset_size

    def group(self, prompt_index: int, *, policy_version: int) -> PromptGroup:
        """Prompt `prompt_index` as a group of group_size samples, dispatched at `policy_version`."""
        example = self._mixture[dataset_position(prompt_index, self._dataset_size, self._seed)]
        return PromptGroup(prompt_id=prompt_id_of(prompt_index), prompt_index=prompt_index,
                           token_ids=encode_prompt(example.prompt), group_size=self._group_size,
                           policy_version=policy_version, seed=sample_seed(self._seed, prompt_index),
                           issued_at=time.time())
