"""Word vocabularies: token <-> id, built from training text only.

Ids are list positions, which is also the line number in the exported
``vocab.txt``; id 0 is ``<pad>`` and id 1 is ``<unk>`` in every vocabulary, so
the server can pad and map unknown words without reading the model.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from seqserve.text import tokenize

PAD = "<pad>"
UNK = "<unk>"
PAD_ID = 0
UNK_ID = 1
SPECIALS = (PAD, UNK)


class Vocab:
    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        if tokens[: len(SPECIALS)] != list(SPECIALS):
            raise ValueError(f"a vocabulary must start with {SPECIALS}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("duplicate tokens in vocabulary")
        self.tokens = tokens
        self.index = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def build(
        cls, sentences: Iterable[Sequence[str]], min_count: int = 1, max_size: int | None = None
    ) -> "Vocab":
        """Most frequent tokens first (ties alphabetical, so a rebuild is identical)."""
        counts = Counter(t for sentence in sentences for t in sentence)
        for special in SPECIALS:
            counts.pop(special, None)
        ranked = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        if max_size is not None:
            ranked = ranked[: max(0, max_size - len(SPECIALS))]
        return cls([*SPECIALS, *ranked])

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.index.get(t, UNK_ID) for t in tokens]

    def encode_text(self, text: str) -> list[int]:
        """Exactly the server's path: seqserve.text.tokenize (lower-cased) then lookup."""
        return self.encode(tokenize(text, lowercase=True))
