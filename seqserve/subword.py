"""Subword tokenization for translation: a small byte-pair-encoding model in pure Python.

Training (export) and serving share this module, so the server tokenizes and
detokenizes exactly as the model was trained, without torch or sentencepiece.

Text -> words: NFKC, white space folded, then ``\\w+`` runs and single symbols;
a word that followed white space (or starts the text) carries the marker ``▁``
in front, as sentencepiece does, so detokenizing is joining the pieces and
turning each ``▁`` back into a space: "Hola, mundo." -> ``▁Hola , ▁mundo .``.

Words -> pieces: BPE (Sennrich et al. 2016). Merges are learned on the training
split's word counts and applied in rank order; characters never seen in
training become ``<unk>``. ``kind="words"`` keeps whole words instead (the
baseline the BPE choice was measured against), with rare words as ``<unk>``.

Ids: 0 ``<pad>``, 1 ``<unk>``, 2 ``<bos>``, 3 ``<eos>``, then the pieces.

The model is one JSON file (``SubwordModel.save`` / ``load``)::

    {"format": "seqserve-subword-v1", "kind": "bpe", "normalize": "nfkc",
     "pieces": [...all ids' strings...], "merges": [["▁", "t"], ...]}
"""

from __future__ import annotations

import heapq
import json
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

FORMAT = "seqserve-subword-v1"
TOKENIZER_NAME = FORMAT
MARK = "▁"  # U+2581: "a space came before this word"
PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3

_WORD_RE = re.compile(r"(\s*)(\w+|[^\w\s])")


def normalize(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


def split_words(text: str) -> list[str]:
    """Words with the space marker: "Hola, mundo." -> ["▁Hola", ",", "▁mundo", "."]."""
    words = []
    for i, m in enumerate(_WORD_RE.finditer(normalize(text))):
        words.append((MARK if (m.group(1) or i == 0) else "") + m.group(2))
    return words


def _learn_merges(word_counts: Counter[str], n_merges: int) -> list[tuple[str, str]]:
    """Greedy BPE with incremental pair counts and a lazy max-heap (ties: smallest pair)."""
    words = [list(w) for w in word_counts]
    freqs = list(word_counts.values())
    pair_count: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], set[int]] = defaultdict(set)
    for i, (w, f) in enumerate(zip(words, freqs)):
        for pair in zip(w, w[1:]):
            pair_count[pair] += f
            where[pair].add(i)
    heap = [(-c, p) for p, c in pair_count.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    while len(merges) < n_merges and heap:
        neg, pair = heapq.heappop(heap)
        if -neg != pair_count.get(pair, 0) or -neg <= 0:
            continue  # stale entry: the count changed since it was pushed
        if -neg < 2:
            break  # a merge seen once only memorizes one word
        merges.append(pair)
        a, b = pair
        joined = a + b
        changed: set[tuple[str, str]] = set()
        for i in list(where[pair]):
            w, f = words[i], freqs[i]
            for p in zip(w, w[1:]):  # take the word's pairs out, merge, put them back
                pair_count[p] -= f
                changed.add(p)
            out, j = [], 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    out.append(joined)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            words[i] = out
            for p in zip(out, out[1:]):
                pair_count[p] += f
                where[p].add(i)
                changed.add(p)
        del pair_count[pair]
        for p in changed:
            c = pair_count.get(p, 0)
            if c > 0:
                heapq.heappush(heap, (-c, p))
    return merges


class SubwordModel:
    """Text <-> ids. ``kind`` "bpe" (pieces from merges) or "words" (whole words, rare ones <unk>)."""

    def __init__(self, pieces: Sequence[str], merges: Sequence[tuple[str, str]] = (), kind: str = "bpe") -> None:
        if tuple(pieces[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a subword vocabulary must start with {SPECIALS}")
        if kind not in ("bpe", "words"):
            raise ValueError(f"unknown subword kind {kind!r}")
        self.kind = kind
        self.pieces = list(pieces)
        self.index = {p: i for i, p in enumerate(self.pieces)}
        self.merges = [tuple(m) for m in merges]
        self.ranks = {m: r for r, m in enumerate(self.merges)}
        self._cache: dict[str, list[int]] = {}

    def __len__(self) -> int:
        return len(self.pieces)

    # ------------------------------------------------------------------ training

    @classmethod
    def train(
        cls, texts: Iterable[str], vocab_size: int = 8000, kind: str = "bpe", min_count: int = 2
    ) -> "SubwordModel":
        """Learn from training text. bpe: characters seen ``min_count`` times, then merges up to
        ``vocab_size`` pieces; words: the ``vocab_size`` most frequent words seen ``min_count`` times."""
        counts: Counter[str] = Counter(w for t in texts for w in split_words(t))
        if kind == "words":
            ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
            return cls([*SPECIALS, *ranked[: vocab_size - len(SPECIALS)]], kind="words")
        chars: Counter[str] = Counter()
        for w, c in counts.items():
            for ch in w:
                chars[ch] += c
        alphabet = sorted((ch for ch, c in chars.items() if c >= min_count), key=lambda ch: (-chars[ch], ch))
        n_merges = max(0, vocab_size - len(SPECIALS) - len(alphabet))
        # A rare character would only become <unk> later; leave it out of merge learning too.
        known = set(alphabet)
        usable = Counter({w: c for w, c in counts.items() if all(ch in known for ch in w)})
        merges = _learn_merges(usable, n_merges)
        pieces = [*SPECIALS, *alphabet]
        seen = set(pieces)
        for a, b in merges:
            if a + b not in seen:
                pieces.append(a + b)
                seen.add(a + b)
        return cls(pieces, merges, kind="bpe")

    # ------------------------------------------------------------------ encoding

    def _encode_word(self, word: str) -> list[int]:
        ids = self._cache.get(word)
        if ids is not None:
            return ids
        if self.kind == "words":
            ids = [self.index.get(word, UNK_ID)]
        else:
            symbols = list(word)
            while len(symbols) > 1:
                ranked = [(self.ranks.get(p, 1 << 30), j) for j, p in enumerate(zip(symbols, symbols[1:]))]
                rank, j = min(ranked)
                if rank == 1 << 30:
                    break
                a, b = self.merges[rank]
                out, k = [], 0
                while k < len(symbols):  # merge every occurrence of this pair, left to right
                    if k + 1 < len(symbols) and symbols[k] == a and symbols[k + 1] == b:
                        out.append(a + b)
                        k += 2
                    else:
                        out.append(symbols[k])
                        k += 1
                symbols = out
            ids = [self.index.get(s, UNK_ID) for s in symbols]
        if len(self._cache) < 200_000:
            self._cache[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """Text -> piece ids (no <bos>/<eos>)."""
        return [i for w in split_words(text) for i in self._encode_word(w)]

    def encode_pieces(self, text: str) -> list[str]:
        return [self.pieces[i] for i in self.encode(text)]

    # ------------------------------------------------------------------ decoding

    def piece_text(self, i: int) -> str:
        """What one id adds to the output text (specials add nothing; <unk> shows as itself)."""
        if i < len(SPECIALS):
            return UNK if i == UNK_ID else ""
        return self.pieces[i].replace(MARK, " ")

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text; stops at <eos>."""
        d = Detokenizer(self)
        return "".join(d.push(i) for i in ids) + d.flush()

    def detokenizer(self) -> "Detokenizer":
        return Detokenizer(self)

    # ------------------------------------------------------------------ files

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "kind": self.kind,
            "normalize": "nfkc",
            "pieces": self.pieces,
            "merges": [list(m) for m in self.merges],
        }

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, raw: dict) -> "SubwordModel":
        if raw.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} subword model (format={raw.get('format')!r})")
        return cls(raw["pieces"], [tuple(m) for m in raw.get("merges", [])], raw.get("kind", "bpe"))

    @classmethod
    def load(cls, path: Path | str) -> "SubwordModel":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


class Detokenizer:
    """Incremental detokenization for streamed output: ``push(id)`` returns the text that id adds.

    The concatenation of every push (and ``flush()``) equals ``decode`` of all the ids. The only
    state is whether anything was printed yet, because the first word's leading space is dropped.
    """

    def __init__(self, model: SubwordModel) -> None:
        self.model = model
        self.started = False
        self.done = False

    def push(self, i: int) -> str:
        if self.done or i == EOS_ID:
            self.done = True
            return ""
        text = self.model.piece_text(int(i))
        if not self.started and text:
            text = text.lstrip(" ")
            self.started = bool(text)
        return text

    def flush(self) -> str:
        return ""
