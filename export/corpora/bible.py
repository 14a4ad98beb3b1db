"""English-Spanish verse pairs from two SWORD Bible modules.

English is the World English Bible (``sword-text-web``, versification
NRSVA), Spanish the Reina-Valera 1909 (``sword-text-sparv``, KJV). Verses are
paired by their OSIS reference (book.chapter.verse). NRSVA is KJV plus the
deuterocanonical books and two extra NT verses, so references that exist in
only one system, and verses that are empty on either side (the WEB leaves a
few text-critical verses empty), are dropped and counted.

Same reference does not always mean same text: the RV 1909 numbers a few
chapters differently from the KJV scheme its module declares (Numbers 13
starts one verse earlier, Job 39 three verses earlier, ...), and the module
converter stored its verses by their own numbers anyway. :func:`filter_pairs`
finds those chapters from the data (see there) and drops them, and drops
pairs whose lengths are too different to be translations of each other
(merged verses, the colophons the RV appends to the epistles).
"""

from __future__ import annotations

import math
import re
import statistics
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from export.corpora.archives import extract_deb
from export.corpora.sword import Glue, ModuleConf, osis_to_text, read_module
from seqserve.text import normalize

SWORD_ROOT = "usr/share/sword"  # where Debian installs SWORD libraries


@dataclass(frozen=True)
class VersePair:
    ref: str  # "Gen.1.1"
    en: str
    es: str

    @property
    def chapter(self) -> str:
        """``Book.Chapter``: the unit splits keep together."""
        return self.ref.rsplit(".", 1)[0]


@dataclass
class AlignStats:
    en_module: str = ""
    es_module: str = ""
    en_versification: str = ""
    es_versification: str = ""
    en_verses: int = 0  # non-empty verses per side
    es_verses: int = 0
    pairs: int = 0
    only_en: int = 0  # reference absent from the Spanish versification
    only_es: int = 0
    empty_en: int = 0  # reference in both, text empty on one side
    empty_es: int = 0
    only_en_books: dict[str, int] = field(default_factory=dict)


_CLITICS = frozenset({"lo", "la", "los", "las", "le", "les", "me", "te", "se", "nos", "os"})
_NOT_VERBS = frozenset({
    "a", "á", "aquel", "como", "con", "cuánto", "de", "e", "é", "el", "él", "ella", "ellas", "ellos",
    "en", "es", "esa", "ésa", "ese", "ése", "esta", "ésta", "este", "éste", "he", "la", "las", "le",
    "les", "lo", "los", "mas", "más", "me", "ni", "no", "nos", "o", "ó", "os", "para", "por", "pues",
    "que", "se", "si", "sí", "sin", "te", "u", "y", "ya",
})


def spanish_glue(left: str, right: str) -> bool:
    """Whether an added pronoun is an enclitic of the word before it.

    The RV 1909 marks some object pronouns as added words and writes them
    glued to the verb ("sáca<transChange>lo</transChange>" is *sácalo*); other
    added words just lack their space ("comida" "que"). Lower-case words that
    are not function words, followed by a clitic pronoun, are taken as one
    word. Capitalised left halves stay separate: mid-sentence they are names
    (*Josué los*), and sentence-initial enclitics are rare.
    """
    return right.lower() in _CLITICS and left.islower() and left not in _NOT_VERBS


def module_verses(root: Path, glue: Glue | None = None) -> tuple[ModuleConf, dict[str, str]]:
    """Plain text of every verse slot of the module under ``root``.

    Keys are all references of the module's versification in order; the
    text is "" where the module leaves the verse empty.
    """
    conf, entries = read_module(root)
    verses = {
        slot.osis: normalize(osis_to_text(markup, glue))
        for slot, markup in entries.items()
        if slot.is_verse
    }
    return conf, verses


def align(en_root: Path, es_root: Path) -> tuple[list[VersePair], AlignStats]:
    """Pair the verses of two SWORD libraries by reference, in English order."""
    en_conf, en = module_verses(en_root)
    es_conf, es = module_verses(es_root, spanish_glue)
    stats = AlignStats(
        en_module=en_conf.name, es_module=es_conf.name,
        en_versification=en_conf.versification, es_versification=es_conf.versification,
        en_verses=sum(1 for t in en.values() if t), es_verses=sum(1 for t in es.values() if t),
    )
    pairs = []
    for ref, en_text in en.items():
        if ref not in es:
            stats.only_en += 1
            book = ref.split(".", 1)[0]
            stats.only_en_books[book] = stats.only_en_books.get(book, 0) + 1
        elif not en_text:
            stats.empty_en += 1
        elif not es[ref]:
            stats.empty_es += 1
        else:
            pairs.append(VersePair(ref, en_text, es[ref]))
    stats.only_es = sum(1 for ref in es if ref not in en)
    stats.pairs = len(pairs)
    return pairs, stats


def align_debs(en_deb: Path, es_deb: Path) -> tuple[list[VersePair], AlignStats]:
    """Unpack two ``sword-text-*`` packages to a temp dir and align them."""
    with tempfile.TemporaryDirectory(prefix="seqserve-sword-") as tmp:
        en_root = extract_deb(en_deb, Path(tmp) / "en", SWORD_ROOT)
        es_root = extract_deb(es_deb, Path(tmp) / "es", SWORD_ROOT)
        return align(en_root, es_root)


# --- finding pairs that share a reference but not a text -------------------

_WORD_RE = re.compile(r"[^\W\d_]{3,}")


@dataclass
class FilterStats:
    lexicon: int = 0  # word pairs learned
    flagged: int = 0  # verses that match a neighbour better than their own pair
    shifted_chapters: list[str] = field(default_factory=list)
    dropped_shifted: int = 0
    dropped_length: int = 0
    length_ratio: float = 0.0  # median es/en characters


def _words(text: str) -> set[str]:
    return set(_WORD_RE.findall(text.lower()))


def _lexicon(en: list[set[str]], es: list[set[str]]) -> dict[str, set[str]]:
    """Learn likely word translations from verse co-occurrence (Dice score).

    Almost all pairs are aligned, so a word and its translation co-occur far
    more often than chance. Very common words (over 3% of verses) say nothing
    about which verse is which and are left out, as are words seen under 3
    times.
    """
    n = len(en)
    df_en = Counter(w for words in en for w in words)
    df_es = Counter(w for words in es for w in words)
    top = 0.03 * n
    co: Counter[tuple[str, str]] = Counter()
    for e_words, s_words in zip(en, es):
        e_mid = [w for w in e_words if 3 <= df_en[w] <= top]
        s_mid = [w for w in s_words if 3 <= df_es[w] <= top]
        co.update((a, b) for a in e_mid for b in s_mid)
    lexicon: dict[str, set[str]] = defaultdict(set)
    for (a, b), count in co.items():
        if count >= 3 and 2 * count / (df_en[a] + df_es[b]) >= 0.3:
            lexicon[a].add(b)
    return dict(lexicon)


def filter_pairs(
    pairs: list[VersePair],
    window: int = 3,
    min_run: int = 3,
    max_log_ratio: float = 0.7,
) -> tuple[list[VersePair], FilterStats]:
    """Drop chapters whose verse numbers are shifted, and length outliers.

    Shift test: with a lexicon learned from all pairs, each English verse gets
    the share of its known words whose translation appears in its Spanish
    verse. A verse is *flagged* when a Spanish verse up to ``window`` verses
    away (same book) covers it clearly better (by 0.25 or more, its own at
    most 0.5). One flag is noise (short verses, repeated formulas); a run of
    ``min_run`` flags pointing the same way, each within ``window`` verses
    of the last, is a renumbered passage, and its chapters are dropped whole
    (the rest of such a chapter is shifted too, and its last verse usually
    holds two verses). Pairs must be in canonical order.

    Length test: drop a pair whose es/en character ratio is more than
    ``exp(max_log_ratio)`` (2x) away from the median ratio.
    """
    stats = FilterStats()
    if not pairs:
        return [], stats
    en_words = [_words(p.en) for p in pairs]
    es_words = [_words(p.es) for p in pairs]
    lexicon = _lexicon(en_words, es_words)
    stats.lexicon = sum(len(v) for v in lexicon.values())
    books = [p.ref.split(".", 1)[0] for p in pairs]

    def coverage(i: int, j: int) -> float | None:
        keys = [w for w in en_words[i] if w in lexicon]
        if not keys:
            return None
        return sum(1 for w in keys if lexicon[w] & es_words[j]) / len(keys)

    flags: list[tuple[int, int]] = []  # (index, direction of the better match)
    for i in range(len(pairs)):
        own = coverage(i, i)
        if own is None or own > 0.5:
            continue
        best, best_j = -1.0, i
        for j in range(max(0, i - window), min(len(pairs), i + window + 1)):
            if j != i and books[j] == books[i]:
                score = coverage(i, j)
                if score is not None and score > best:
                    best, best_j = score, j
        if best - own >= 0.25:
            flags.append((i, 1 if best_j > i else -1))
    stats.flagged = len(flags)

    shifted: set[str] = set()
    run: list[tuple[int, int]] = []
    for flag in flags + [(-10 * window, 0)]:  # sentinel closes the last run
        if run and (
            flag[0] - run[-1][0] > window or flag[1] != run[-1][1] or books[flag[0]] != books[run[-1][0]]
        ):
            if len(run) >= min_run:
                shifted.update(pairs[i].chapter for i, _ in run)
            run = []
        run.append(flag)
    stats.shifted_chapters = sorted(shifted, key=lambda c: next(i for i, p in enumerate(pairs) if p.chapter == c))

    ratios = [math.log(len(p.es) / len(p.en)) for p in pairs]
    center = statistics.median(ratios)
    stats.length_ratio = math.exp(center)
    kept = []
    for pair, ratio in zip(pairs, ratios):
        if pair.chapter in shifted:
            stats.dropped_shifted += 1
        elif abs(ratio - center) > max_log_ratio:
            stats.dropped_length += 1
        else:
            kept.append(pair)
    return kept, stats
