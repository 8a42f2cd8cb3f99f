"""How prompts and responses become token ids: the one prompt format every component uses.

A prompt is `<bos>` + task prompt + `<sep>`; the response follows and ends with `<eos>`.
Encoding goes straight through the fixed table in `vocab` (one id per character), which is
what the saved tokenizer does too (tests check they agree), so no tokenizer object has to
be passed around or loaded on the hot path.
"""

import operator
from collections.abc import Sequence
from typing import SupportsIndex

from rollspec.rl.tasks import Example
from rollspec.rl.vocab import BOS_ID, BOS_TOKEN, EOS_ID, SEP_ID, SEP_TOKEN, TOKEN_TO_ID, VOCAB, VOCAB_SIZE


class UnknownCharacterError(ValueError):
    """Text containing characters outside `vocab.ALPHABET`."""

    def __init__(self, text: str, characters: set[str]):
        super().__init__(f"characters {sorted(characters)!r} are not in the alphabet (text {text[:80]!r})")
        self.text, self.characters = text, characters


class InvalidTokenIdError(ValueError):
    """A token id outside [0, VOCAB_SIZE)."""

    def __init__(self, token_id: object):
        super().__init__(f"token id {token_id!r} is not in [0, {VOCAB_SIZE})")
        self.token_id = token_id


def render_prompt(prompt: str) -> str:
    """The prompt as text with its special tokens, e.g. `<bos>addition:1+2<sep>`."""
    return f"{BOS_TOKEN}{prompt}{SEP_TOKEN}"


def encode_text(text: str) -> list[int]:
    """Ids of plain text (no special tokens); raises UnknownCharacterError on foreign characters."""
    # Looking up single characters means a special token's spelling can never match here,
    # and '<' / '>' are not in the alphabet, so "<eos>" in a prompt is rejected, not injected.
    unknown = {char for char in text if char not in TOKEN_TO_ID}
    if unknown:
        raise UnknownCharacterError(text, unknown)
    return [TOKEN_TO_ID[char] for char in text]


def encode_prompt(prompt: str) -> list[int]:
    """Ids of `render_prompt(prompt)`: [BOS_ID, *prompt, SEP_ID]."""
    return [BOS_ID, *encode_text(prompt), SEP_ID]


def encode_response(response: str) -> list[int]:
    """Ids of a response closed by `<eos>`: [*response, EOS_ID]."""
    return [*encode_text(response), EOS_ID]


def encode_example(example: Example) -> tuple[list[int], list[int]]:
    """(prompt_ids, response_ids) of an example's prompt and reference response."""
    return encode_prompt(example.prompt), encode_response(example.reference_response)


def decode(ids: Sequence[int]) -> str:
    """Text of `ids`, special tokens spelled out; exact inverse of the encoders above."""
    return "".join(VOCAB[_checked_id(token_id)] for token_id in ids)


def _checked_id(token_id: object) -> int:
    # SupportsIndex admits numpy and 0-d torch integers but not floats or bools.
    if isinstance(token_id, bool) or not isinstance(token_id, SupportsIndex):
        raise InvalidTokenIdError(token_id)
    value = operator.index(token_id)
    if not 0 <= value < VOCAB_SIZE:
        raise InvalidTokenIdError(token_id)
    return value


def decode_response(response_ids: Sequence[int]) -> str:
    """The response text a reward function should see: up to (not including) the first <eos>.

    Other special tokens a sampled response may contain stay spelled out, so a response
    that emits `<sep>` mid-answer is graded as the garbage it is, not silently cleaned.
    """
    ids = list(response_ids)
    if EOS_ID in ids:
        ids = ids[: ids.index(EOS_ID)]
    return decode(ids)
