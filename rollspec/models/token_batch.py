"""Padded batches of (prompt + response) token sequences, with the positions that are trained.

Shape legend: B sequences, T positions (longest sequence in the batch).

Position t is trained when it predicts a response token, i.e. tokens[t + 1] belongs to the
response (its <eos> included): the last prompt token (<sep>) through the second-to-last token.
Prompts are context only; no model here is ever asked to draft or generate a prompt. Sequences
are right-padded with <pad>, which causal attention keeps from influencing real positions.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator, Sequence

import torch

from rollspec.rl.mixture import TaskMixture
from rollspec.rl.template import encode_example
from rollspec.rl.vocab import PAD_ID

# Examples sorted together by length before being cut into batches: large enough that a batch
# holds sequences of similar length (little padding), small enough to stay well mixed.
BUCKET_BATCHES = 16


@dataclasses.dataclass(frozen=True, slots=True)
class TokenSequence:
    """One training sequence: prompt ids followed by response ids (ending in <eos>)."""

    token_ids: tuple[int, ...]
    prompt_len: int


@dataclasses.dataclass(frozen=True, slots=True)
class TokenBatch:
    """tokens_BT right-padded; trained_BT[b, t] says position t predicts a response token."""

    tokens_BT: torch.Tensor
    trained_BT: torch.Tensor

    @property
    def num_trained(self) -> int:
        return int(self.trained_BT.sum())


def collate(sequences: Sequence[TokenSequence]) -> TokenBatch:
    """Pad `sequences` into one batch."""
    width = max(len(s.token_ids) for s in sequences)
    tokens_BT = torch.full((len(sequences), width), PAD_ID, dtype=torch.long)
    trained_BT = torch.zeros((len(sequences), width), dtype=torch.bool)
    for b, seq in enumerate(sequences):
        tokens_BT[b, : len(seq.token_ids)] = torch.tensor(seq.token_ids)
        trained_BT[b, seq.prompt_len - 1 : len(seq.token_ids) - 1] = True
    return TokenBatch(tokens_BT, trained_BT)


def bucketed(sequences: Sequence[TokenSequence], batch_size: int, rng: random.Random) -> list[TokenBatch]:
    """Batches of similar-length sequences, in a shuffled order (the last partial batch is kept)."""
    order = sorted(range(len(sequences)), key=lambda i: (len(sequences[i].token_ids), i))
    groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(groups)
    return [collate([sequences[i] for i in group]) for group in groups]


def reference_sequences(mixture: TaskMixture, count: int, start: int = 0) -> list[TokenSequence]:
    """Examples `start .. start + count - 1` of the mixture with their reference responses."""
    out = []
    for example in mixture.take(count, start):
        prompt_ids, response_ids = encode_example(example)
        out.append(TokenSequence(tuple(prompt_ids + response_ids), len(prompt_ids)))
    return out


def reference_batches(mixture: TaskMixture, batch_size: int, seed: int) -> Iterator[TokenBatch]:
    """An endless stream of bucketed reference batches, never repeating an example index."""
    rng = random.Random(seed)
    chunk = batch_size * BUCKET_BATCHES
    start = 0
    while True:
        yield from bucketed(reference_sequences(mixture, chunk, start), batch_size, rng)
        start += chunk
