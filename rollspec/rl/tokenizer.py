"""The character-level tokenizer, built locally and saved in Hugging Face format.

One token per character of `vocab.ALPHABET` plus the special tokens, with the ids fixed by
`vocab.VOCAB`. There is no post-processor: encoding never adds <bos>/<eos> on its own, so
`rollspec.rl.template` is the single place that decides where special tokens go.
"""

import json
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

from rollspec.rl.vocab import (
    BOS_TOKEN,
    EOS_TOKEN,
    PAD_TOKEN,
    SEP_TOKEN,
    SPECIAL_TOKENS,
    TOKEN_TO_ID,
    UNK_TOKEN,
    VOCAB,
)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
MODEL_MAX_LENGTH = 1024

# Lets `tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)`
# produce exactly `template.render_prompt(prompt)`, for callers that only hold the HF directory.
CHAT_TEMPLATE = (
    "{{ '" + BOS_TOKEN + "' }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ message['content'] }}{{ '" + SEP_TOKEN + "' }}{% else %}{{ message['content'] }}{{ '" + EOS_TOKEN + "' }}"
    "{% endif %}{% endfor %}"
)


class TokenizerMismatchError(ValueError):
    """A saved tokenizer whose vocabulary differs from the one this code defines."""

    def __init__(self, path: object, detail: str):
        super().__init__(f"tokenizer at {path}: {detail}")
        self.path, self.detail = path, detail


def build_tokenizer() -> Tokenizer:
    """A fresh `tokenizers.Tokenizer`: one token per character, ids exactly `vocab.VOCAB`."""
    tokenizer = Tokenizer(models.WordLevel(vocab=dict(TOKEN_TO_ID), unk_token=UNK_TOKEN))
    # Every character, newline included, becomes its own piece; special tokens are matched
    # before pre-tokenization, so "<eos>" stays whole.
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    # Fuse concatenates pieces with no separator; the default decoder would insert spaces.
    tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS])
    return tokenizer


def save_tokenizer(directory: str | Path, tokenizer: Tokenizer | None = None) -> Path:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json into `directory`.

    The result loads with `transformers.AutoTokenizer.from_pretrained(directory)` and encodes
    to the same ids as `build_tokenizer()`. Passing no tokenizer saves a freshly built one.
    """
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    (tokenizer or build_tokenizer()).save(str(path / "tokenizer.json"))
    special = {"pad_token": PAD_TOKEN, "bos_token": BOS_TOKEN, "eos_token": EOS_TOKEN, "sep_token": SEP_TOKEN,
               "unk_token": UNK_TOKEN}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special,
        "model_max_length": MODEL_MAX_LENGTH,
        # transformers would otherwise "clean up" spaces before punctuation and break round trips.
        "clean_up_tokenization_spaces": False,
        "add_bos_token": False,
        "add_eos_token": False,
        "chat_template": CHAT_TEMPLATE,
    }
    (path / "tokenizer_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (path / "special_tokens_map.json").write_text(json.dumps(special, indent=2, sort_keys=True) + "\n")
    return path


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """Load `directory/tokenizer.json`, checking its vocabulary is exactly `vocab.VOCAB`."""
    path = Path(directory) / "tokenizer.json"
    if not path.is_file():
        raise TokenizerMismatchError(path, "file not found")
    tokenizer = Tokenizer.from_file(str(path))
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    if vocab != dict(TOKEN_TO_ID):
        different = sorted(t for t in set(vocab) | set(TOKEN_TO_ID) if vocab.get(t) != TOKEN_TO_ID.get(t))
        raise TokenizerMismatchError(path, f"{len(vocab)} tokens vs {len(VOCAB)} expected; ids differ for {different}")
    return tokenizer
