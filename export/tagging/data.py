"""Tagging data: CoNLL sentences -> the exact tokens, ids and features the server will produce.

The server tokenizes raw text with ``seqserve.text.tokenize(text, lowercase=False)``,
looks each token up in the vocabulary *lowercased*, and computes
``seqserve.features.token_features`` from the token as written. Training
does the same, token for token, or the served model would see inputs it was
never trained on.

The corpus is already split into words, but not always as the tokenizer
splits them: 3.1% of Brown's training words become several tokens
(````` -> ``` ```, ``--`` -> ``- -``, ``Mr.`` -> ``Mr .``, ``long-range`` ->
``long - range``, ``1,000`` -> ``1 , 000``). Such a word is expanded into its
tokens; the word pieces keep the word's tag and the one-character symbol
pieces are tagged ``.`` (punctuation, when the tag set has it), which is
what a tagger can be asked to say about a lone ``-`` or ``.``. Scores are
therefore over served tokens. Each corpus word also marks one *primary*
token (its first word piece, else its first piece) whose tag is the word's
gold tag, so accuracy per corpus word — comparable with published Brown
figures — is reported beside it.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from export.corpora.formats import read_conll
from export.corpora.universal import UNIVERSAL_TAGS
from export.vocab import PAD_ID, UNK_ID, Vocab
from seqserve.features import PAD_FEATURE, token_features
from seqserve.text import tokenize

SPLITS = ("train", "dev", "test")
PUNCT_TAG = "."
IGNORE = -100  # target at padded positions: cross_entropy skips it
assert PAD_ID == PAD_FEATURE == 0, "collate pads ids and features in one go"


def is_symbol(token: str) -> bool:
    """A one-character non-word token, as the tokenizer emits for punctuation and symbols."""
    return len(token) == 1 and not (token.isalnum() or token == "_")


def expand_sentence(words: Sequence[tuple[str, str]], punct_tag: str | None = PUNCT_TAG) -> list[tuple[str, str, bool]]:
    """``[(word, tag)]`` -> ``[(token, tag, primary)]`` as the server's tokenizer splits the words."""
    out: list[tuple[str, str, bool]] = []
    for word, tag in words:
        pieces = tokenize(word, lowercase=False)
        if len(pieces) == 1:
            out.append((pieces[0], tag, True))
            continue
        # The first word piece carries the word's tag (it is the word's head for scoring); a
        # word made only of symbols (`` or --) has its first piece as primary instead.
        primary = next((i for i, p in enumerate(pieces) if not is_symbol(p)), 0)
        for i, piece in enumerate(pieces):
            piece_tag = punct_tag if (punct_tag and is_symbol(piece)) else tag
            out.append((piece, piece_tag, i == primary))
    return out


def choose_labels(train_tags: set[str]) -> list[str]:
    """The universal tags in their canonical order when the data uses them, else sorted."""
    if train_tags <= set(UNIVERSAL_TAGS):
        return list(UNIVERSAL_TAGS)
    return sorted(train_tags)


@dataclass
class TagSentence:
    """One sentence as tensors; row t is token t."""

    x: Tensor  # (T, 1 + F) int64: column 0 the vocabulary id, then the F features
    y: Tensor  # (T,) int64 tag ids
    primary: Tensor  # (T,) bool: the token that stands for its corpus word

    def __len__(self) -> int:
        return self.x.size(0)


class RowEncoder:
    """token -> [id, *features], memoized: a corpus repeats a few tens of thousands of distinct tokens."""

    def __init__(self, vocab: Vocab, buckets: int) -> None:
        self.vocab, self.buckets = vocab, buckets
        self.cache: dict[str, list[int]] = {}

    def __call__(self, token: str) -> list[int]:
        row = self.cache.get(token)
        if row is None:
            row = [self.vocab.index.get(token.lower(), UNK_ID), *token_features(token, self.buckets)]
            self.cache[token] = row
        return row


def encode_sentence(
    tokens: Sequence[str], tags: Sequence[str], primary: Sequence[bool], rows: RowEncoder, label_id: dict[str, int]
) -> TagSentence:
    return TagSentence(
        x=torch.tensor([rows(tok) for tok in tokens], dtype=torch.long),
        y=torch.tensor([label_id[t] for t in tags], dtype=torch.long),
        primary=torch.tensor(list(primary), dtype=torch.bool),
    )


@dataclass
class TaggingData:
    vocab: Vocab
    labels: list[str]
    splits: dict[str, list[TagSentence]]
    files: dict[str, str]
    counts: list[int] = field(default_factory=list)  # training-token count per vocabulary id (0 for specials)
    stats: dict[str, int] = field(default_factory=dict)


def load_tagging(
    files: dict[str, Path],
    *,
    buckets: int,
    min_count: int = 1,
    max_vocab: int | None = None,
    max_train_sentences: int | None = None,
    seed: int = 1234,
) -> TaggingData:
    """Read, expand, build the vocabulary (training split only) and encode all splits."""
    raw = {name: read_conll(path) for name, path in files.items()}
    if max_train_sentences is not None and max_train_sentences < len(raw["train"]):
        # A seeded sample, not the first N: the file lists whole documents, so a prefix is a few genres.
        raw["train"] = random.Random(seed).sample(raw["train"], max_train_sentences)
    labels = choose_labels({t for s in raw["train"] for _, t in s})
    # A custom tag set without "." keeps the word's tag on its symbol pieces.
    punct = PUNCT_TAG if PUNCT_TAG in labels else None
    expanded = {name: [expand_sentence(s, punct) for s in sents] for name, sents in raw.items()}
    label_id = {t: i for i, t in enumerate(labels)}
    counter = Counter(tok.lower() for s in expanded["train"] for tok, _, _ in s)
    vocab = Vocab.build(([tok.lower() for tok, _, _ in s] for s in expanded["train"]), min_count, max_vocab)
    counts = [0, 0] + [counter[t] for t in vocab.tokens[2:]]

    rows = RowEncoder(vocab, buckets)
    splits: dict[str, list[TagSentence]] = {}
    stats: dict[str, int] = {}
    for name, sents in expanded.items():
        unknown = {t for s in sents for _, t, _ in s} - set(label_id)
        if unknown:
            raise ValueError(f"{files[name]}: tags not in the training split: {sorted(unknown)}")
        splits[name] = [
            encode_sentence([t for t, _, _ in s], [g for _, g, _ in s], [p for _, _, p in s], rows, label_id)
            for s in sents
            if s
        ]
        stats[f"{name}_sentences"] = len(splits[name])
        stats[f"{name}_words"] = sum(len(s) for s in raw[name])
        stats[f"{name}_tokens"] = sum(len(s) for s in splits[name])
    return TaggingData(vocab, labels, splits, {k: str(v) for k, v in files.items()}, counts, stats)


# ----------------------------------------------------------------------------- batching


@dataclass
class TagBatch:
    tokens: Tensor  # (B, T) int64, PAD_ID past each row's length
    features: Tensor  # (B, T, F) int64, PAD_FEATURE past each row's length
    lengths: Tensor  # (B,) int64
    targets: Tensor  # (B, T) int64, IGNORE past each row's length
    primary: Tensor  # (B, T) bool, False past each row's length


def collate(sentences: Sequence[TagSentence]) -> TagBatch:
    # ids and features pad with the same value (0), so one pad_sequence does both
    x = pad_sequence([s.x for s in sentences], batch_first=True, padding_value=PAD_ID)  # (B, T, 1+F)
    return TagBatch(
        tokens=x[..., 0].contiguous(),
        features=x[..., 1:].contiguous(),
        lengths=torch.tensor([len(s) for s in sentences], dtype=torch.long),
        targets=pad_sequence([s.y for s in sentences], batch_first=True, padding_value=IGNORE),
        primary=pad_sequence([s.primary for s in sentences], batch_first=True, padding_value=False),
    )


def concatenate(sentences: Sequence[TagSentence]) -> TagSentence:
    return TagSentence(
        torch.cat([s.x for s in sentences]),
        torch.cat([s.y for s in sentences]),
        torch.cat([s.primary for s in sentences]),
    )


def train_batches(
    sentences: list[TagSentence], batch_size: int, rng: random.Random, max_len: int
) -> Iterator[TagBatch]:
    """Shuffled batches of similar length (little padding), cut to ``max_len`` tokens."""
    order = list(range(len(sentences)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        block = sorted(order[start : start + chunk], key=lambda i: len(sentences[i]))
        batches += [block[i : i + batch_size] for i in range(0, len(block), batch_size)]
    rng.shuffle(batches)
    for b in batches:
        picked = [sentences[i] for i in b]
        if max(len(s) for s in picked) > max_len:
            picked = [TagSentence(s.x[:max_len], s.y[:max_len], s.primary[:max_len]) for s in picked]
        yield collate(picked)


def eval_batches(sentences: list[TagSentence], batch_size: int = 256) -> Iterator[TagBatch]:
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    for start in range(0, len(order), batch_size):
        yield collate([sentences[i] for i in order[start : start + batch_size]])
