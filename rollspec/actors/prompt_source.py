"""Prompt groups by index: the controller's prompt stream over a TaskMixture.

Group i is a pure function of (mixture config, sample seed, i), so a resumed run regenerates
exactly the prompts (and sampling seeds) its checkpoint says are still outstanding.
"""

import hashlib
import time

from rollspec.actors.messages import PromptGroup, prompt_id_of
from rollspec.rl.mixture import TaskMixture
from rollspec.rl.template import encode_prompt

SEED_BITS = 62


def sample_seed(seed: int, prompt_index: int) -> int:
    """Seed of sample 0 of prompt `prompt_index` (sample j uses this + j); leaves room below 2**62."""
    digest = hashlib.blake2b(f"rollspec-sample/{seed}/{prompt_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - SEED_BITS + 1)


class PromptSource:
    """Builds the PromptGroup for any index of the training split."""

    def __init__(self, mixture: TaskMixture, *, group_size: int, seed: int):
        self._mixture = mixture
        self._group_size = group_size
        self._seed = seed

    def group(self, prompt_index: int, *, policy_version: int) -> PromptGroup:
        """Prompt `prompt_index` as a group of group_size samples, dispatched at `policy_version`."""
        example = self._mixture[prompt_index]
        return PromptGroup(prompt_id=prompt_id_of(prompt_index), prompt_index=prompt_index,
                           token_ids=encode_prompt(example.prompt), group_size=self._group_size,
                           policy_version=policy_version, seed=sample_seed(self._seed, prompt_index),
                           issued_at=time.time())
