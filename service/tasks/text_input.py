"""Turning client text into token ids, with the limits every task shares."""

from __future__ import annotations

from seqserve.manifest import Manifest, read_vocab
from seqserve.text import TOKENIZER_NAME, tokenize
from service.errors import InvalidArgument


class Encoder:
    """Text to ids for one model: its tokenizer settings and its vocabulary."""

    def __init__(self, manifest: Manifest, vocab_path: str, max_chars: int, max_tokens: int) -> None:
        name = manifest.tokenizer.get("name")
        if name != TOKENIZER_NAME:
            raise ValueError(f"tokenizer {name!r} is not supported by this server (it has {TOKENIZER_NAME!r})")
        self._lowercase = bool(manifest.tokenizer.get("lowercase", True))
        vocab = read_vocab(vocab_path)
        self._ids = {token: i for i, token in enumerate(vocab)}
        self._vocab_size = len(vocab)  # ids are line numbers
        self._unk = manifest.special_tokens["unk"]
        self._max_chars = max_chars
        self._max_tokens = max_tokens

    def encode(self, text: str, what: str = "text") -> list[int]:
        """Token ids of ``text``; InvalidArgument when it is empty or too long."""
        if len(text) > self._max_chars:
            raise InvalidArgument(f"{what} has {len(text)} characters; the limit is {self._max_chars}")
        tokens = tokenize(text, lowercase=self._lowercase)
        if not tokens:
            raise InvalidArgument(f"{what} is empty: send at least one word")
        if len(tokens) > self._max_tokens:
            raise InvalidArgument(f"{what} has {len(tokens)} tokens; the limit is {self._max_tokens}")
        return [self._ids.get(token, self._unk) for token in tokens]

    def check_ids(self, ids: list[int], what: str = "tokens") -> list[int]:
        """Ids a client tokenized itself, held to the limits text has; an id outside
        the vocabulary would fail the whole batch it lands in, so it fails here."""
        if not ids:
            raise InvalidArgument(f"{what} is empty: send at least one token")
        if len(ids) > self._max_tokens:
            raise InvalidArgument(f"{what} has {len(ids)} tokens; the limit is {self._max_tokens}")
        bad = next((i for i in ids if not 0 <= i < self._vocab_size), None)
        if bad is not None:
            raise InvalidArgument(f"{what} has token id {bad}; this model's ids are 0..{self._vocab_size - 1}")
        return ids
