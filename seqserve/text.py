"""Tokenization shared by training and serving.

Training and the server must split text identically, or the served model sees
ids it was never trained on. The manifest records ``TOKENIZER_NAME`` and the
server refuses a model whose tokenizer it does not implement.
"""

from __future__ import annotations

import re
import unicodedata

TOKENIZER_NAME = "words-v1"

# Words keep inner apostrophes ("don't", "century's") because the sentiment
# corpus was tokenized that way; every other non-space symbol stands alone.
_TOKEN_RE = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")


def normalize(text: str) -> str:
    """NFKC-normalize and fold all runs of white space to one space."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Split ``text`` into word and punctuation tokens."""
    text = normalize(text)
    if lowercase:
        text = text.lower()
    return _TOKEN_RE.findall(text.replace("’", "'"))
