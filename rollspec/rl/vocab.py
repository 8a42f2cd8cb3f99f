"""The fixed alphabet and special tokens: the one place token ids are defined.

Ids are positional in `VOCAB`, so they never depend on dict ordering, library versions or
which tasks happen to be registered. Appending characters at the end keeps every existing
id stable; reordering or removing them invalidates every model trained on the old ids.
"""

from types import MappingProxyType

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<bos>"
EOS_TOKEN = "<eos>"
SEP_TOKEN = "<sep>"  # ends the prompt; the response starts right after it
UNK_TOKEN = "<unk>"  # only reachable through the raw `tokenizers` object; our helpers reject unknown text

SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, SEP_TOKEN, UNK_TOKEN)
PAD_ID, BOS_ID, EOS_ID, SEP_ID, UNK_ID = range(len(SPECIAL_TOKENS))

# '<' and '>' are deliberately absent: without them no text can spell a special token, so
# encoding a prompt can never inject <eos> or <sep>. Spare punctuation is included now so
# new tasks do not have to change ids under already-trained models.
DIGITS = "0123456789"
LETTERS = "abcdefghijklmnopqrstuvwxyz"
PUNCTUATION = " \n!#%()*+,-./:;=?[]^_|"
ALPHABET = DIGITS + LETTERS + PUNCTUATION

VOCAB: tuple[str, ...] = SPECIAL_TOKENS + tuple(ALPHABET)
VOCAB_SIZE = len(VOCAB)
TOKEN_TO_ID = MappingProxyType({token: i for i, token in enumerate(VOCAB)})

assert len(set(ALPHABET)) == len(ALPHABET), "duplicate character in ALPHABET"
