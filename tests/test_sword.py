"""SWORD zText reading, versification layout, OSIS stripping and verse alignment.

The modules here are built byte by byte in the test, with the same record
layouts the real Debian packages use, so the parser is checked against the
format rather than against itself.
"""

from __future__ import annotations

import io
import random
import struct
import tarfile
import zlib
from pathlib import Path

import pytest

from export.corpora import bible
from export.corpora.archives import ArchiveError, extract_deb, read_ar
from export.corpora.bible import VersePair, align, align_debs, filter_pairs, spanish_glue
from export.corpora.sword import SwordError, find_module, osis_to_text, parse_conf, read_module
from export.corpora.versification import Slot, books_of, slot_count, slots

# --- helpers: write a zText module -----------------------------------------------


def write_testament(data_dir: Path, testament: str, entries: list[str], block_size: int = 50) -> None:
    """Write .bzs/.bzv/.bzz for ``entries`` (one per slot), ``block_size`` per block."""
    bzs, bzv, bzz = bytearray(), bytearray(), bytearray()
    for start in range(0, len(entries), block_size):
        block_no = start // block_size
        raw = bytearray()
        for text in entries[start : start + block_size]:
            data = text.encode("utf-8")
            bzv += struct.pack("<IIH", block_no, len(raw), len(data))
            raw += data
        packed = zlib.compress(bytes(raw))
        bzs += struct.pack("<III", len(bzz), len(packed), len(raw))
        bzz += packed
    for ext, blob in (("bzs", bzs), ("bzv", bzv), ("bzz", bzz)):
        (data_dir / f"{testament}.{ext}").write_bytes(bytes(blob))


def write_module(root: Path, name: str, versification: str, verses: dict[str, str],
                 extra_conf: str = "", headings: bool = True) -> Path:
    """Build a SWORD library at ``root`` with one zText module holding ``verses``."""
    data_path = f"modules/texts/ztext/{name.lower()}/"
    (root / "mods.d").mkdir(parents=True, exist_ok=True)
    conf = (f"[{name}]\nDataPath=./{data_path}\nModDrv=zText\nSourceType=OSIS\nEncoding=UTF-8\n"
            f"CompressType=ZIP\nBlockType=BOOK\n")
    if versification != "default":
        conf += f"Versification={versification}\n"
    (root / "mods.d" / f"{name.lower()}.conf").write_text(conf + extra_conf, encoding="utf-8")
    data_dir = root / data_path
    data_dir.mkdir(parents=True, exist_ok=True)
    system = "KJV" if versification == "default" else versification
    for testament in ("ot", "nt"):
        entries = []
        for slot in slots(system, testament):
            if slot.is_verse:
                entries.append(verses.get(slot.osis, ""))
            elif headings and slot.verse == 0 and slot.chapter > 0:
                ref = f"{slot.book}.{slot.chapter}"
                entries.append(f'<chapter n="{slot.chapter}" osisID="{ref}" sID="{ref}"/>')
            else:
                entries.append("")
        write_testament(data_dir, testament, entries)
    return root


# --- versification -----------------------------------------------------------------


def test_slot_counts_match_the_real_module_files():
    # Record counts of the real .bzv files (bytes / 10) in the pinned packages.
    assert slot_count("KJV", "ot") == 24115
    assert slot_count("KJV", "nt") == 8246
    assert slot_count("NRSVA", "ot") == 31027
    assert slot_count("NRSVA", "nt") == 8248


def test_canon_shape():
    assert len(books_of("KJV", "ot")) == 39 and len(books_of("KJV", "nt")) == 27
    assert sum(sum(c) for _, c in books_of("KJV", "ot")) + sum(sum(c) for _, c in books_of("KJV", "nt")) == 31102
    nrsva_nt = dict(books_of("NRSVA", "nt"))
    assert nrsva_nt["3John"] == (15,) and nrsva_nt["Rev"][11] == 18
    assert dict(books_of("KJV", "nt"))["3John"] == (14,)
    assert [b for b, _ in books_of("NRSVA", "ot")][39:42] == ["Tob", "Jdt", "EsthGr"]
    with pytest.raises(ValueError, match="not supported"):
        slot_count("Vulg", "ot")


def test_slot_layout_has_heading_entries():
    nt = list(slots("KJV", "nt"))
    assert nt[:5] == [Slot("[nt]", 0, 0), Slot("[nt]", 0, 1), Slot("Matt", 0, 0), Slot("Matt", 1, 0),
                      Slot("Matt", 1, 1)]
    ot = list(slots("KJV", "ot"))
    assert ot.index(Slot("Gen", 1, 1)) == 4
    assert ot.index(Slot("Gen", 2, 0)) == 4 + 31  # chapter 1 has 31 verses
    assert ot.index(Slot("Exod", 0, 0)) == 4 + sum(1 + n for n in books_of("KJV", "ot")[0][1]) - 1
    assert Slot("John", 3, 16).osis == "John.3.16" and Slot("John", 3, 16).is_verse
    assert not Slot("John", 3, 0).is_verse and not Slot("John", 0, 0).is_verse


# --- zText reading -----------------------------------------------------------------


def test_read_module_places_verses_by_versification(tmp_path):
    verses = {"Gen.1.1": "In the beginning", "Gen.1.31": "very good", "Gen.2.1": "finished",
              "Mal.4.6": "curse", "Matt.1.1": "The book", "John.3.16": "For God so loved",
              "Rev.22.21": "Amen."}
    write_module(tmp_path, "Tiny", "KJV", verses)
    conf, entries = read_module(tmp_path)
    assert conf.name == "Tiny" and conf.versification == "KJV"
    for ref, text in verses.items():
        book, ch, v = ref.split(".")
        assert entries[Slot(book, int(ch), int(v))] == text
    assert entries[Slot("Gen", 1, 2)] == ""
    assert entries[Slot("John", 3, 0)] == '<chapter n="3" osisID="John.3" sID="John.3"/>'
    assert len(entries) == 24115 + 8246


def test_default_versification_is_kjv(tmp_path):
    write_module(tmp_path, "NoV11n", "default", {"Gen.1.1": "x"})
    conf, entries = read_module(tmp_path)
    assert conf.versification == "KJV" and entries[Slot("Gen", 1, 1)] == "x"


def test_nrsva_module(tmp_path):
    write_module(tmp_path, "Apoc", "NRSVA", {"Tob.1.1": "Tobit", "3John.1.15": "extra", "Rev.12.18": "sand"})
    _, entries = read_module(tmp_path)
    assert entries[Slot("Tob", 1, 1)] == "Tobit"
    assert entries[Slot("3John", 1, 15)] == "extra"
    assert entries[Slot("Rev", 12, 18)] == "sand"


def test_wrong_record_count_is_an_error(tmp_path):
    write_module(tmp_path, "Bad", "KJV", {"Gen.1.1": "x"})
    conf = (tmp_path / "mods.d" / "bad.conf").read_text().replace("Versification=KJV", "Versification=NRSVA")
    (tmp_path / "mods.d" / "bad.conf").write_text(conf)
    with pytest.raises(SwordError, match="needs 31027"):
        read_module(tmp_path)


def test_corrupt_files_are_errors(tmp_path):
    write_module(tmp_path, "Bad", "KJV", {"Gen.1.1": "x"})
    data = tmp_path / "modules/texts/ztext/bad"
    (data / "ot.bzv").write_bytes((data / "ot.bzv").read_bytes() + b"\x00")
    with pytest.raises(SwordError, match="multiple of 10"):
        read_module(tmp_path)
    write_module(tmp_path, "Bad", "KJV", {"Gen.1.1": "x"})
    (data / "ot.bzz").write_bytes(b"garbage" * 10)
    with pytest.raises(SwordError, match="does not inflate"):
        read_module(tmp_path)


def test_unsupported_driver(tmp_path):
    write_module(tmp_path, "Raw", "KJV", {})
    conf_path = tmp_path / "mods.d" / "raw.conf"
    conf_path.write_text(conf_path.read_text().replace("ModDrv=zText", "ModDrv=RawText"))
    with pytest.raises(SwordError, match="only zText"):
        read_module(tmp_path)


def test_conf_parsing_and_module_lookup(tmp_path):
    conf = parse_conf("# comment\n[engX]\nDataPath=./m/\nModDrv=zText\nLang=en\nLang=fr\nAbout=a=b\n")
    assert conf.name == "engX" and conf.lang == "en" and conf.versification == "KJV"
    with pytest.raises(SwordError, match="no \\[ModuleName\\]"):
        parse_conf("DataPath=x\n")
    (tmp_path / "mods.d").mkdir()
    with pytest.raises(SwordError, match="found: none"):
        find_module(tmp_path)


# --- OSIS to text ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markup", "expected"),
    [
        ('<w lemma="strong:H7225">In</w> <w lemma="strong:H0853">the</w> beginning', "In the beginning"),
        # footnote between two words, with no space of its own
        ('God<note placement="foot"><reference>1:1</reference>Hebrew “Elohim”</note><w>created</w>',
         "God created"),
        ("word<note>a note</note>. Next", "word. Next"),
        ("only born</q><note>x</note><q>Son,", "only born Son,"),
        ('Christ</w>,<note type="crossReference">Luke 3</note><w>the son', "Christ, the son"),
        ("<note>outer <note>inner</note> still note</note>kept", "kept"),
        ('<title canonical="true" type="psalm">A Psalm by David.</title> <l>Yahweh</l>',
         "A Psalm by David. Yahweh"),
        ('<title type="main">Section heading</title>Text', "Text"),
        ("<speaker>Beloved</speaker> <l>Let him kiss me</l>", "Let him kiss me"),
        ('<l level="1" sID="a"/>line one<l eID="a"/><l sID="b"/>line two<l eID="b"/>', "line one line two"),
        ("Tom &amp; Jerry &lt;3", "Tom & Jerry <3"),
        ('Amen.<div sID="g1" type="glossary"/>Abba means father<div eID="g1" type="glossary"/>',
         "Amen."),
        ('a<div type="introduction"><p>intro <div>x</div></p></div>b', "a b"),
        ('<divineName>Lord</divineName>’s <transChange type="added">house</transChange>', "Lord’s house"),
        ("  spaced\n\ttext  ", "spaced text"),
        ("", ""),
    ],
)
def test_osis_to_text(markup, expected):
    assert osis_to_text(markup) == expected


def test_trans_change_boundaries():
    markup = 'con maná, <transChange type="added">comida</transChange><w>que</w> no'
    assert osis_to_text(markup) == "con maná, comida que no"
    enclitic = '<w>sáca</w><transChange type="added">lo</transChange>, y'
    assert osis_to_text(enclitic) == "sáca lo, y"
    assert osis_to_text(enclitic, spanish_glue) == "sácalo, y"
    # a space already there stays one space
    assert osis_to_text('a <transChange type="added">b</transChange> c', spanish_glue) == "a b c"


@pytest.mark.parametrize(
    ("left", "right", "glued"),
    [("sáca", "lo", True), ("tráeme", "lo", True), ("decir", "les", True), ("comida", "que", False),
     ("que", "la", False), ("Josué", "los", False), ("no", "lo", False), ("éste", "le", False)],
)
def test_spanish_glue(left, right, glued):
    assert spanish_glue(left, right) is glued


# --- alignment -------------------------------------------------------------------


def test_align_pairs_by_reference(tmp_path):
    en = {"Gen.1.1": "<w>In the beginning</w>", "Gen.1.2": "The earth", "John.3.16": "For God",
          "Tob.1.1": "Tobit", "3John.1.15": "Peace", "Acts.8.37": '<note>added in TR</note>'}
    es = {"Gen.1.1": "EN el principio", "Gen.1.2": "", "John.3.16": "Porque de tal manera",
          "Acts.8.37": "Y Felipe dijo"}
    write_module(tmp_path / "en", "Eng", "NRSVA", en, "Lang=en\n")
    write_module(tmp_path / "es", "Spa", "KJV", es, "Lang=es\n")
    pairs, stats = align(tmp_path / "en", tmp_path / "es")
    assert [(p.ref, p.en, p.es) for p in pairs] == [
        ("Gen.1.1", "In the beginning", "EN el principio"),
        ("John.3.16", "For God", "Porque de tal manera"),
    ]
    assert stats.en_versification == "NRSVA" and stats.es_versification == "KJV"
    # NRSVA-only slots: 17 deuterocanonical books plus 3 John 1:15 and Rev 12:18
    assert stats.only_en == (31027 - 24115) - 17 - sum(len(c) for b, c in books_of("NRSVA", "ot")[39:]) + 2
    assert stats.only_en_books["Tob"] == sum(dict(books_of("NRSVA", "ot"))["Tob"])
    # Shared references: all 31102 KJV verses; English has text in 3 of them
    # (Acts 8:37 holds only a note), Spanish lacks Gen 1:2.
    assert stats.empty_en == 31102 - 3 and stats.empty_es == 1 and stats.only_es == 0
    assert stats.en_verses == 5 and stats.es_verses == 3
    assert pairs[0].chapter == "Gen.1"


def _synthetic_pairs(seed: int = 0) -> list[VersePair]:
    """A fake parallel Bible: 'Spanish' words are English words with a prefix."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = sorted({"".join(rng.choice(letters) for _ in range(6)) for _ in range(600)})
    pairs = []
    for book in ("Gen", "Exod"):
        for chapter in range(1, 41):
            for verse in range(1, 16):
                words = rng.sample(vocab, rng.randint(8, 16))
                en = " ".join(words)
                es = " ".join("x" + w for w in words)
                pairs.append(VersePair(f"{book}.{chapter}.{verse}", en, es))
    return pairs


def test_filter_pairs_drops_renumbered_chapters():
    pairs = _synthetic_pairs()
    # Renumber Exod.7 the way RV 1909 does Num 13: Spanish verse n holds verse n-1.
    chapter = [i for i, p in enumerate(pairs) if p.chapter == "Exod.7"]
    shifted = {i: pairs[i - 1].es for i in chapter}
    for i, es in shifted.items():
        pairs[i] = VersePair(pairs[i].ref, pairs[i].en, es)
    kept, stats = filter_pairs(pairs)
    assert stats.shifted_chapters == ["Exod.7"]
    assert stats.dropped_shifted == 15
    assert not any(p.chapter == "Exod.7" for p in kept)
    assert len(kept) == len(pairs) - 15 - stats.dropped_length
    assert stats.dropped_length == 0


def test_filter_pairs_keeps_isolated_mismatch_and_drops_length_outliers():
    pairs = _synthetic_pairs(1)
    # One swapped verse is noise, not a renumbering: kept by the shift test.
    pairs[10], pairs[11] = (VersePair(pairs[10].ref, pairs[10].en, pairs[11].es),
                            VersePair(pairs[11].ref, pairs[11].en, pairs[10].es))
    # A verse merged with its neighbour is three times too long.
    pairs[100] = VersePair(pairs[100].ref, pairs[100].en, pairs[100].es + " " + pairs[101].es * 2)
    kept, stats = filter_pairs(pairs)
    assert stats.shifted_chapters == []
    assert stats.dropped_length == 1
    assert pairs[100] not in kept and pairs[10] in kept


def test_filter_pairs_empty():
    assert filter_pairs([]) == ([], bible.FilterStats())


# --- Debian packages ---------------------------------------------------------------


def _ar(members: dict[str, bytes]) -> bytes:
    out = bytearray(b"!<arch>\n")
    for name, data in members.items():
        header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n"
        out += header.encode("ascii") + data + (b"\n" if len(data) % 2 else b"")
    return bytes(out)


def _tar_xz(root: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        tar.add(root, arcname=".")
    return buf.getvalue()


def make_deb(path: Path, tree: Path) -> Path:
    path.write_bytes(_ar({"debian-binary": b"2.0\n", "control.tar.xz": _tar_xz(tree / "DEBIAN"),
                          "data.tar.xz": _tar_xz(tree / "data")}))
    return path


def test_read_ar_roundtrip_and_errors():
    members = {"debian-binary": b"2.0\n", "odd": b"abc", "even": b"abcd"}
    assert read_ar(_ar(members)) == members
    with pytest.raises(ArchiveError, match="bad magic"):
        read_ar(b"PK\x03\x04")
    with pytest.raises(ArchiveError, match="truncated"):
        read_ar(_ar({"x": b"123456"})[:-3])


def test_debs_end_to_end(tmp_path):
    for lang, verses in (("en", {"Gen.1.1": "In the beginning, God created", "John.3.16": "For God so loved"}),
                         ("es", {"Gen.1.1": "EN el principio crió Dios", "John.3.16": "Porque de tal manera"})):
        tree = tmp_path / lang
        (tree / "DEBIAN").mkdir(parents=True)
        (tree / "DEBIAN" / "control").write_text(f"Package: sword-text-{lang}\n")
        write_module(tree / "data" / "usr/share/sword", f"Mod{lang}", "KJV", verses)
        (tree / "data" / "usr/share/doc").mkdir(parents=True)
        (tree / "data" / "usr/share/doc/copyright").write_text("PD")
        make_deb(tmp_path / f"{lang}.deb", tree)
    out = extract_deb(tmp_path / "en.deb", tmp_path / "x", "usr/share/sword")
    assert (out / "mods.d" / "moden.conf").is_file()
    assert not (tmp_path / "x" / "usr/share/doc").exists()  # only the requested subtree
    pairs, stats = align_debs(tmp_path / "en.deb", tmp_path / "es.deb")
    assert [(p.ref, p.en, p.es) for p in pairs] == [
        ("Gen.1.1", "In the beginning, God created", "EN el principio crió Dios"),
        ("John.3.16", "For God so loved", "Porque de tal manera"),
    ]


def test_deb_without_data_member(tmp_path):
    deb = tmp_path / "bad.deb"
    deb.write_bytes(_ar({"debian-binary": b"2.0\n"}))
    with pytest.raises(ArchiveError, match="data.tar"):
        extract_deb(deb, tmp_path / "out")
