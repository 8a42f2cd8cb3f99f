"""The tokenizer and prompt template: fixed ids, exact round trips, HF loading."""

import json

import pytest

from rollspec.rl.tasks import MAX_DIFFICULTY, MIN_DIFFICULTY, get_task, task_names
from rollspec.rl.template import (
    InvalidTokenIdError,
    UnknownCharacterError,
    decode,
    decode_response,
    encode_example,
    encode_prompt,
    encode_text,
    render_prompt,
)
from rollspec.rl.tokenizer import (
    TOKENIZER_FILES,
    TokenizerMismatchError,
    build_tokenizer,
    load_tokenizer,
    save_tokenizer,
)
from rollspec.rl.vocab import ALPHABET, BOS_ID, EOS_ID, PAD_ID, SEP_ID, UNK_ID, VOCAB_SIZE


def _all_examples():
    return [
        get_task(name).generate(seed, difficulty)
        for name in task_names()
        for difficulty in range(MIN_DIFFICULTY, MAX_DIFFICULTY + 1)
        for seed in range(40)
    ]


EXAMPLES = _all_examples()


@pytest.fixture(scope="module")
def saved_dir(tmp_path_factory):
    return save_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="module")
def hf_tokenizer(saved_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(saved_dir)


def test_special_ids_and_vocab_size_are_fixed():
    assert (PAD_ID, BOS_ID, EOS_ID, SEP_ID, UNK_ID) == (0, 1, 2, 3, 4)
    assert 48 <= VOCAB_SIZE <= 128
    tokenizer = build_tokenizer()
    assert tokenizer.get_vocab_size() == VOCAB_SIZE
    assert [tokenizer.token_to_id(t) for t in ("<pad>", "<bos>", "<eos>", "<sep>", "<unk>")] == [0, 1, 2, 3, 4]
    assert tokenizer.encode(ALPHABET).ids == list(range(5, VOCAB_SIZE))


def test_every_task_character_is_in_the_alphabet():
    used = {c for e in EXAMPLES for c in e.prompt + e.reference_response}
    assert used <= set(ALPHABET), used - set(ALPHABET)


def test_template_round_trips_every_example_exactly():
    for example in EXAMPLES:
        prompt_ids, response_ids = encode_example(example)
        assert prompt_ids[0] == BOS_ID and prompt_ids[-1] == SEP_ID
        assert response_ids[-1] == EOS_ID and EOS_ID not in response_ids[:-1]
        assert decode(prompt_ids) == render_prompt(example.prompt)
        assert decode_response(response_ids) == example.reference_response
        assert len(response_ids) == len(example.reference_response) + 1


def test_tokenizers_library_agrees_with_the_template():
    tokenizer = build_tokenizer()
    for example in EXAMPLES:
        prompt_ids, response_ids = encode_example(example)
        assert tokenizer.encode(render_prompt(example.prompt)).ids == prompt_ids
        assert tokenizer.encode(example.reference_response + "<eos>").ids == response_ids
        assert tokenizer.decode(prompt_ids + response_ids, skip_special_tokens=False) == (
            render_prompt(example.prompt) + example.reference_response + "<eos>"
        )


def test_saved_directory_has_the_hf_files_and_reloads(saved_dir):
    assert all((saved_dir / name).is_file() for name in TOKENIZER_FILES)
    assert json.loads((saved_dir / "special_tokens_map.json").read_text())["eos_token"] == "<eos>"
    reloaded = load_tokenizer(saved_dir)
    assert reloaded.encode(ALPHABET).ids == build_tokenizer().encode(ALPHABET).ids


def test_transformers_autotokenizer_gives_identical_ids(hf_tokenizer):
    assert len(hf_tokenizer) == VOCAB_SIZE
    assert (hf_tokenizer.pad_token_id, hf_tokenizer.bos_token_id, hf_tokenizer.eos_token_id) == (PAD_ID, BOS_ID, EOS_ID)
    assert hf_tokenizer.sep_token_id == SEP_ID
    assert hf_tokenizer.decode(hf_tokenizer.encode(ALPHABET)) == ALPHABET
    for example in EXAMPLES[::3]:
        prompt_ids, response_ids = encode_example(example)
        assert hf_tokenizer(render_prompt(example.prompt))["input_ids"] == prompt_ids
        assert hf_tokenizer.encode(example.reference_response) == response_ids[:-1]
        assert hf_tokenizer.decode(response_ids, skip_special_tokens=True) == example.reference_response
        assert hf_tokenizer.decode(prompt_ids + response_ids) == decode(prompt_ids + response_ids)


def test_chat_template_matches_render_prompt(hf_tokenizer):
    prompt = get_task("countdown").generate(3).prompt
    messages = [{"role": "user", "content": prompt}]
    assert hf_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == render_prompt(prompt)


def test_load_rejects_a_tokenizer_with_different_ids(tmp_path):
    tokenizer = build_tokenizer()
    tokenizer.add_tokens(["<extra>"])
    save_tokenizer(tmp_path, tokenizer)
    with pytest.raises(TokenizerMismatchError, match="<extra>"):
        load_tokenizer(tmp_path)
    with pytest.raises(TokenizerMismatchError, match="not found"):
        load_tokenizer(tmp_path / "missing")


def test_foreign_characters_and_ids_raise_named_errors():
    with pytest.raises(UnknownCharacterError, match="'<'"):
        encode_prompt("addition:1+2<eos>")
    with pytest.raises(UnknownCharacterError, match="'A'"):
        encode_text("Add")
    for bad in (VOCAB_SIZE, -1, 1.0, True):
        with pytest.raises(InvalidTokenIdError):
            decode([5, bad])


def test_decode_response_stops_at_the_first_eos_and_spells_other_specials():
    ids = encode_text("1+2") + [SEP_ID] + encode_text("#3") + [EOS_ID] + encode_text("junk") + [PAD_ID]
    assert decode_response(ids) == "1+2<sep>#3"
    assert decode_response(encode_text("#3")) == "#3"
