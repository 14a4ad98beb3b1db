"""Read SWORD zText Bible modules (as shipped by Debian's ``sword-text-*``).

A module is a ``mods.d/<name>.conf`` file plus, under its ``DataPath``, three
files per testament (``ot``, ``nt``):

``.bzs``  block index: 12-byte records ``<offset u32><size u32><raw size u32>``
          locating each zlib-compressed block inside ``.bzz``;
``.bzv``  verse index: 10-byte records ``<block u32><offset u32><length u16>``,
          one per versification slot (see :mod:`export.corpora.versification`);
``.bzz``  the compressed blocks, each a run of UTF-8 verse texts.

All integers are little-endian. Verse text is OSIS markup; :func:`osis_to_text`
keeps the words and drops notes, headings and attributes.
"""

from __future__ import annotations

import html
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from export.corpora.versification import Slot, slot_count, slots

_BZS = struct.Struct("<III")
_BZV = struct.Struct("<IIH")


class SwordError(ValueError):
    """A module is malformed or uses a feature this reader does not support."""


@dataclass(frozen=True)
class ModuleConf:
    """The parts of a ``mods.d/*.conf`` file the reader needs."""

    name: str
    data_path: str
    driver: str
    compress: str
    encoding: str
    source_type: str
    versification: str
    lang: str


def parse_conf(text: str) -> ModuleConf:
    """Parse a SWORD ``.conf`` (INI-like; repeated keys allowed, first wins)."""
    name = ""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]") and not name:
            name = line[1:-1].strip()
            continue
        key, sep, value = line.partition("=")
        if sep:
            values.setdefault(key.strip(), value.strip())
    if not name:
        raise SwordError("module .conf has no [ModuleName] section")
    return ModuleConf(
        name=name,
        data_path=values.get("DataPath", ""),
        driver=values.get("ModDrv", ""),
        compress=values.get("CompressType", "ZIP"),
        encoding=values.get("Encoding", "Latin-1"),
        source_type=values.get("SourceType", "Plaintext"),
        # SWORD's documented default when a module does not say.
        versification=values.get("Versification", "KJV"),
        lang=values.get("Lang", ""),
    )


def find_module(root: Path, name: str | None = None) -> tuple[ModuleConf, Path]:
    """Find a module under a SWORD library root (the dir holding ``mods.d``).

    Returns its conf and its data directory. With ``name`` None the library
    must hold exactly one module.
    """
    confs = sorted((root / "mods.d").glob("*.conf"))
    parsed = [parse_conf(p.read_text(encoding="utf-8", errors="replace")) for p in confs]
    if name is not None:
        parsed = [c for c in parsed if c.name.lower() == name.lower()]
    if len(parsed) != 1:
        found = ", ".join(c.name for c in parsed) or "none"
        raise SwordError(f"expected one SWORD module under {root / 'mods.d'}, found: {found}")
    conf = parsed[0]
    data_dir = (root / conf.data_path).resolve()
    if not data_dir.is_dir():
        raise SwordError(f"module {conf.name}: DataPath {conf.data_path!r} not found under {root}")
    return conf, data_dir


def read_testament(data_dir: Path, testament: str, encoding: str = "UTF-8") -> list[str]:
    """Return the raw entry of every index record of one testament.

    A record of length 0 (empty verse, or heading with no content) gives "".
    A missing testament (e.g. an NT-only module) gives an empty list.
    """
    bzs_path, bzv_path, bzz_path = (data_dir / f"{testament}.{ext}" for ext in ("bzs", "bzv", "bzz"))
    if not bzv_path.exists():
        return []
    bzs, bzv, bzz = bzs_path.read_bytes(), bzv_path.read_bytes(), bzz_path.read_bytes()
    for path, data, size in ((bzs_path, bzs, _BZS.size), (bzv_path, bzv, _BZV.size)):
        if len(data) % size:
            raise SwordError(f"{path}: size {len(data)} is not a multiple of {size}")
    blocks = [_BZS.unpack_from(bzs, i) for i in range(0, len(bzs), _BZS.size)]
    codec = "utf-8" if encoding.upper().replace("-", "") == "UTF8" else "latin-1"

    cache: dict[int, bytes] = {}  # blocks are shared by many consecutive verses

    def block(number: int) -> bytes:
        if number not in cache:
            if number >= len(blocks):
                raise SwordError(f"{bzv_path}: block {number} out of range ({len(blocks)} blocks)")
            offset, size, raw_size = blocks[number]
            try:
                data = zlib.decompress(bzz[offset : offset + size])
            except zlib.error as exc:
                raise SwordError(f"{bzz_path}: block {number} does not inflate: {exc}") from None
            if len(data) != raw_size:
                raise SwordError(
                    f"{bzz_path}: block {number} inflates to {len(data)} bytes, index says {raw_size}"
                )
            cache[number] = data
        return cache[number]

    entries = []
    for i in range(0, len(bzv), _BZV.size):
        number, offset, length = _BZV.unpack_from(bzv, i)
        if length == 0:
            entries.append("")
            continue
        data = block(number)
        if offset + length > len(data):
            raise SwordError(f"{bzv_path}: record {i // _BZV.size} runs past the end of its block")
        entries.append(data[offset : offset + length].decode(codec, errors="replace"))
    return entries


def read_module(root: Path, name: str | None = None) -> tuple[ModuleConf, dict[Slot, str]]:
    """Read every slot of a zText module into ``{Slot: raw OSIS entry}``.

    Checks that each testament has exactly as many index records as its
    declared versification needs: a mismatch means the table or the module is
    wrong, and every verse after it would be silently mislabelled.
    """
    conf, data_dir = find_module(root, name)
    if conf.driver.lower() != "ztext":
        raise SwordError(f"module {conf.name}: ModDrv={conf.driver} is not supported (only zText)")
    if conf.compress.upper() != "ZIP":
        raise SwordError(f"module {conf.name}: CompressType={conf.compress} is not supported (only ZIP)")
    out: dict[Slot, str] = {}
    for testament in ("ot", "nt"):
        entries = read_testament(data_dir, testament, conf.encoding)
        if not entries:
            continue
        expected = slot_count(conf.versification, testament)
        if len(entries) != expected:
            raise SwordError(
                f"module {conf.name}: {testament}.bzv has {len(entries)} records but "
                f"versification {conf.versification} needs {expected}"
            )
        out.update(zip(slots(conf.versification, testament), entries))
    return conf, out


# --- OSIS to plain text -----------------------------------------------------

# Elements whose content is not verse text: notes (footnotes, cross references),
# headings, speaker labels (Song of Songs) and the variant readings in notes.
_DROP_CONTENT = frozenset({"note", "title", "speaker", "rdg", "catchWord"})
# Elements that separate words (poetry lines, paragraphs, list items).
_BREAKING = frozenset({"l", "lg", "lb", "p", "div", "item", "list", "milestone", "chapter", "verse"})

# Divisions that are front or back matter, not Bible text (the WEB module
# appends its glossary to Rev 22:21). Often written as milestones:
# <div sID="x" type="glossary"/> ... <div eID="x" type="glossary"/>.
_DROP_DIV_TYPES = frozenset({"glossary", "introduction", "front", "back", "preface", "colophon"})

_TAG_RE = re.compile(r"<(/?)([A-Za-z][\w:.-]*)([^>]*?)(/?)>")
_TYPE_RE = re.compile(r'\btype="([^"]*)"')
_SID_RE = re.compile(r'\bsID="([^"]*)"')
_EID_RE = re.compile(r'\beID="([^"]*)"')
_CANONICAL_RE = re.compile(r'\bcanonical="true"')
# Where a dropped note stood. Footnote markers sit between words with no space
# of their own ("God<note>..</note><w>created</w>"), so the gap needs a space
# when it separates two words, and nothing when punctuation follows.
_GAP = "\x00"
_GAP_SPACE_RE = re.compile(r"(?<=[^\s\x00])\x00+(?=[^\W_]|[\"“‘(¿¡])")
# Where a <transChange> (words the translators added) starts or ends. The
# modules often omit the space there ("comida</transChange><w>que"), but
# sometimes the boundary is inside a word (Spanish enclitics: "sáca" + "lo").
_EDGE = "\x01"
_EDGE_RE = re.compile(r"(\w+)\x01+(?=(\w+))")

Glue = Callable[[str, str], bool]


def osis_to_text(markup: str, glue: Glue | None = None) -> str:
    """Strip OSIS markup from one verse, keeping only the words of the text.

    Notes, editorial headings and speaker labels are dropped with their
    content. Canonical titles (``<title canonical="true">``, the psalm
    superscriptions) are kept: they are part of the text, and translations
    that do not mark them up print them inside verse 1. Strong's numbers and
    morphology live in attributes and vanish with the tags; ``w``, ``q``,
    ``transChange`` and similar wrappers keep their content. White space is
    folded to single spaces.

    Where a ``transChange`` touches a word with no space between them, a
    space is inserted unless ``glue(left_word, right_word)`` says the two
    halves form one word.
    """
    out: list[str] = []
    skip: list[str] = []  # open elements whose content is being dropped
    until_eid: str | None = None  # inside a dropped milestone division
    pos = 0
    for match in _TAG_RE.finditer(markup):
        if not skip and until_eid is None:
            out.append(markup[pos : match.start()])
        pos = match.end()
        closing, name, attrs, selfclosing = match.groups()
        if until_eid is not None:
            eid = _EID_RE.search(attrs) if selfclosing else None
            if eid and eid.group(1) == until_eid:
                until_eid = None
                out.append(" ")
            continue
        if selfclosing:
            if skip:
                continue
            kind = _TYPE_RE.search(attrs)
            sid = _SID_RE.search(attrs)
            if name == "div" and kind and kind.group(1) in _DROP_DIV_TYPES and sid:
                until_eid = sid.group(1)
            elif name in _BREAKING:
                out.append(" ")
            continue
        if closing:
            if name == "transChange" and not skip:
                out.append(_EDGE)
            if skip and skip[-1] == name:
                skip.pop()
                if not skip:
                    out.append(_GAP)
            elif not skip and name in _BREAKING:
                out.append(" ")
            continue
        if name == "transChange" and not skip:
            out.append(_EDGE)
            continue
        if skip:
            # Track every element opened inside dropped content so the drop
            # ends at the matching close tag even with nested markup.
            skip.append(name)
        elif name in _DROP_CONTENT and not (name == "title" and _CANONICAL_RE.search(attrs)):
            skip.append(name)
        elif name == "div" and (kind := _TYPE_RE.search(attrs)) and kind.group(1) in _DROP_DIV_TYPES:
            skip.append(name)
        elif name in _BREAKING:
            out.append(" ")
    if not skip and until_eid is None:
        out.append(markup[pos:])
    text = _GAP_SPACE_RE.sub(" ", "".join(out)).replace(_GAP, "")

    def edge(match: re.Match[str]) -> str:
        left, right = match.group(1), match.group(2)
        return left if glue is not None and glue(left, right) else left + " "

    text = _EDGE_RE.sub(edge, text).replace(_EDGE, "")
    # A '<' or '>' left over here is broken markup (real ones are escaped as
    # entities); blank it before unescaping so it cannot leak into the text.
    text = text.replace("<", " ").replace(">", " ")
    return " ".join(html.unescape(text).split())
