"""The three plain-text corpus formats: readers, writers and their checks.

All are UTF-8 with ``\\n`` line ends (a leading BOM and ``\\r\\n`` are
accepted on reading); see ``docs/data-formats.md``.

* sentiment (``.tsv``): ``label<TAB>text`` per line;
* tagging (``.conll``): ``word<TAB>TAG`` per line, a blank line after each
  sentence;
* translation (``.tsv``): ``source<TAB>target`` per line.

Users bring their own files in these formats, so the readers reject anything
malformed with a :class:`FormatError` that names the file and line, instead
of training on garbage.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Collection, Iterable, Iterator, Sequence


class FormatError(ValueError):
    """A corpus file does not follow its format; the message names file and line."""

    def __init__(self, path: Path | str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = Path(path)
        self.line = line


def _lines(path: Path | str) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, line without its end)``, checking UTF-8 line by line."""
    path = Path(path)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise FormatError(path, number, f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
            yield number, line.rstrip("\r\n")


def _pair(path: Path | str, number: int, line: str, what: tuple[str, str]) -> tuple[str, str]:
    fields = line.split("\t")
    expected = f"'{what[0]}<TAB>{what[1]}'"
    if len(fields) != 2:
        found = "no tab" if len(fields) == 1 else f"{len(fields) - 1} tabs"
        raise FormatError(path, number, f"expected {expected}, found {found}")
    for name, value in zip(what, fields):
        if not value.strip():
            raise FormatError(path, number, f"empty {name} in {expected}")
        if value != value.strip():
            raise FormatError(path, number, f"{name} has leading or trailing white space")
    return fields[0], fields[1]


def read_sentiment(path: Path | str, labels: Collection[str] | None = None) -> list[tuple[str, str]]:
    """Read ``label<TAB>text`` lines into ``[(label, text)]``.

    Blank lines are skipped. With ``labels`` given, any other label is an error.
    """
    out = []
    for number, line in _lines(path):
        if not line.strip():
            continue
        label, text = _pair(path, number, line, ("label", "text"))
        if labels is not None and label not in labels:
            allowed = ", ".join(sorted(labels))
            raise FormatError(path, number, f"unknown label {label!r} (expected one of: {allowed})")
        out.append((label, text))
    return out


def read_parallel(path: Path | str) -> list[tuple[str, str]]:
    """Read ``source<TAB>target`` lines into ``[(source, target)]``; blank lines are skipped."""
    out = []
    for number, line in _lines(path):
        if not line.strip():
            continue
        out.append(_pair(path, number, line, ("source", "target")))
    return out


def read_conll(path: Path | str, tagset: Collection[str] | None = None) -> list[list[tuple[str, str]]]:
    """Read a ``word<TAB>TAG`` file into sentences of ``(word, tag)``.

    One or more blank lines end a sentence; the last sentence needs no
    trailing blank line. With ``tagset`` given, any other tag is an error.
    """
    sentences: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for number, line in _lines(path):
        if not line.strip():
            if current:
                sentences.append(current)
                current = []
            continue
        word, tag = _pair(path, number, line, ("word", "tag"))
        if " " in word:
            raise FormatError(path, number, f"word {word!r} contains a space (one token per line)")
        if tagset is not None and tag not in tagset:
            raise FormatError(path, number, f"unknown tag {tag!r} for word {word!r}")
        current.append((word, tag))
    if current:
        sentences.append(current)
    return sentences


# --- writers ------------------------------------------------------------------


def _check_field(value: str, name: str) -> str:
    if not value or value != value.strip() or any(c in value for c in "\t\n\r"):
        raise ValueError(f"{name} {value!r} is empty or has tabs, line breaks or outer spaces")
    return value


def _write_atomic(path: Path | str, lines: Iterable[str]) -> None:
    """Write lines to ``path`` via a temporary file, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            for line in lines:
                handle.write(line)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_pairs(path: Path | str, pairs: Iterable[tuple[str, str]], names: tuple[str, str]) -> None:
    """Write ``a<TAB>b`` lines (sentiment and translation files)."""
    _write_atomic(
        path,
        (f"{_check_field(a, names[0])}\t{_check_field(b, names[1])}\n" for a, b in pairs),
    )


def write_sentiment(path: Path | str, examples: Iterable[tuple[str, str]]) -> None:
    """Write ``[(label, text)]`` as a sentiment ``.tsv``."""
    write_pairs(path, examples, ("label", "text"))


def write_parallel(path: Path | str, pairs: Iterable[tuple[str, str]]) -> None:
    """Write ``[(source, target)]`` as a translation ``.tsv``."""
    write_pairs(path, pairs, ("source", "target"))


def write_conll(path: Path | str, sentences: Iterable[Sequence[tuple[str, str]]]) -> None:
    """Write sentences of ``(word, tag)`` as a ``.conll`` file."""

    def lines() -> Iterator[str]:
        for sentence in sentences:
            if not sentence:
                raise ValueError("empty sentence")
            for word, tag in sentence:
                if " " in word:
                    raise ValueError(f"word {word!r} contains a space")
                yield f"{_check_field(word, 'word')}\t{_check_field(tag, 'tag')}\n"
            yield "\n"

    _write_atomic(path, lines())
