"""Tagging data and models: server-identical tokens and features, padding invariance, step == full,
lookahead scoring, checkpoints and the training command (tiny random-init models, tiny synthetic CoNLL)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from export.corpora.formats import write_conll  # noqa: E402
from export.corpora.universal import UNIVERSAL_TAGS  # noqa: E402
from export.models import ARCHS, save_checkpoint  # noqa: E402
from export.tagging import train as tagging_train  # noqa: E402
from export.tagging.data import collate, expand_sentence, load_tagging  # noqa: E402
from export.tagging.model import CAUSAL_ARCHS, Tagger, TaggerConfig, load_tagger  # noqa: E402
from export.tagging.train import TagSettings, choose_lookahead, evaluate, lookahead_accuracy  # noqa: E402
from export.vocab import UNK_ID  # noqa: E402
from seqserve.features import N_FEATURES, token_features  # noqa: E402
from seqserve.text import tokenize  # noqa: E402

VOCAB, BUCKETS, TAGS = 40, 64, len(UNIVERSAL_TAGS)

TRAIN = [
    [("The", "DET"), ("jury", "NOUN"), ("said", "VERB"), ("it", "PRON"), (".", ".")],
    [("Mr.", "NOUN"), ("Smith", "NOUN"), ("ran", "VERB"), ("quickly", "ADV"), ("--", "."), ("well-known", "ADJ")],
    [("``", "."), ("It's", "PRT"), ("1,000", "NUM"), ("dogs", "NOUN"), ("''", ".")],
] * 4
DEV = [[("The", "DET"), ("dog", "NOUN"), ("barked", "VERB"), (".", ".")]] * 3
TEST = [[("A", "DET"), ("Flurbing", "NOUN"), ("jury", "NOUN"), ("said", "VERB"), ("loudly", "ADV"), ("!", ".")]] * 3


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny models gain nothing from intra-op threads, and on shared cores spinning threads made
    # these tests 10-100x slower (measured).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_config(arch: str, **overrides) -> TaggerConfig:
    base = dict(
        arch=arch,
        vocab_size=VOCAB,
        n_labels=TAGS,
        word_dim=8,
        feature_dim=4,
        feature_buckets=BUCKETS,
        hidden_dim=16,
        n_layers=2,
        n_heads=2,
        ff_dim=24,
    )
    base.update(overrides)
    return TaggerConfig(**base)


def random_batch(B: int, T: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)  # (B,)
    lengths[0] = T
    tokens = torch.randint(1, VOCAB, (B, T), generator=g)  # (B, T)
    features = torch.randint(1, BUCKETS, (B, T, N_FEATURES), generator=g)  # (B, T, F)
    pad = torch.arange(T)[None, :] >= lengths[:, None]
    tokens[pad] = 0
    features[pad] = 0
    return tokens, features, lengths


@pytest.fixture(scope="module")
def conll(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("conll")
    files = {name: root / f"{name}.conll" for name in ("train", "dev", "test")}
    for name, sents in zip(files, (TRAIN, DEV, TEST)):
        write_conll(files[name], sents)
    return files


# ----------------------------------------------------------------------------- data


def test_words_are_split_as_the_server_tokenizes_them() -> None:
    out = expand_sentence([("Mr.", "NOUN"), ("long-range", "ADJ"), ("``", "."), ("1,000", "NUM"), ("It's", "PRT")])
    assert out == [
        ("Mr", "NOUN", True), (".", ".", False),
        ("long", "ADJ", True), ("-", ".", False), ("range", "ADJ", False),
        ("`", ".", True), ("`", ".", False),
        ("1", "NUM", True), (",", ".", False), ("000", "NUM", False),
        ("It's", "PRT", True),
    ]  # fmt: skip


def test_encoded_rows_are_what_the_server_computes(conll: dict[str, Path]) -> None:
    data = load_tagging(conll, buckets=BUCKETS)
    assert data.labels == list(UNIVERSAL_TAGS)
    assert data.vocab.tokens[:2] == ["<pad>", "<unk>"] and "the" in data.vocab.index and "The" not in data.vocab.index
    sentence = data.splits["test"][0]
    # The server's path: raw text -> tokenize(lowercase=False) -> ids of the lowercased tokens + raw-case features.
    tokens = tokenize("A Flurbing jury said loudly!", lowercase=False)
    expected = [[data.vocab.index.get(t.lower(), UNK_ID), *token_features(t, BUCKETS)] for t in tokens]
    assert sentence.x.tolist() == expected
    assert sentence.x[1, 0] == UNK_ID  # "flurbing" was never seen
    assert [data.labels[i] for i in sentence.y] == ["DET", "NOUN", "NOUN", "VERB", "ADV", "."]
    assert data.stats["train_words"] < data.stats["train_tokens"]  # Mr. / -- / `` / 1,000 were split


def test_unknown_tag_in_dev_is_an_error(conll: dict[str, Path], tmp_path: Path) -> None:
    write_conll(tmp_path / "dev.conll", [[("word", "NEWTAG")]])
    with pytest.raises(ValueError, match="NEWTAG"):
        load_tagging({**conll, "dev": tmp_path / "dev.conll"}, buckets=BUCKETS)


# ----------------------------------------------------------------------------- models


@pytest.mark.parametrize("arch", ARCHS)
def test_shapes_and_padding_invariance(arch: str) -> None:
    torch.manual_seed(0)
    model = Tagger(tiny_config(arch)).eval()
    for B, T in [(1, 1), (4, 7), (6, 33)]:
        tokens, features, lengths = random_batch(B, T, seed=B * T)
        with torch.no_grad():
            batched = model(tokens, features, lengths)  # (B, T, n_tags)
            assert batched.shape == (B, T, TAGS) and batched.dtype == torch.float32
            for b in range(B):
                n = int(lengths[b])
                alone = model(tokens[b : b + 1, :n], features[b : b + 1, :n], lengths[b : b + 1])
                torch.testing.assert_close(batched[b, :n], alone[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_features_matter_and_ablation_ignores_them(arch: str) -> None:
    torch.manual_seed(0)
    tokens, features, lengths = random_batch(2, 5)
    other = features.clone()
    other[..., 3] = (other[..., 3] % (BUCKETS - 1)) + 1
    with torch.no_grad():
        model = Tagger(tiny_config(arch)).eval()
        assert not torch.allclose(model(tokens, features, lengths), model(tokens, other, lengths))
        ablated = Tagger(tiny_config(arch, n_features=0)).eval()
        torch.testing.assert_close(ablated(tokens, features, lengths), ablated(tokens, other, lengths))


@settings(max_examples=25, deadline=None)
@given(arch=st.sampled_from(CAUSAL_ARCHS), T=st.integers(1, 30), data=st.data())
def test_step_in_any_chunking_equals_the_full_forward(arch: str, T: int, data: st.DataObject) -> None:
    torch.manual_seed(1)
    model = Tagger(tiny_config(arch)).eval()
    tokens, features, lengths = random_batch(1, T, seed=T)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, T - 1)), max_size=T)))
    with torch.no_grad():
        full = model(tokens, features, lengths)[0]  # (T, n_tags)
        state, pieces, start = model.initial_state(1), [], 0
        for end in [*cuts, T]:
            if end > start:
                logits, state = model.step(tokens[:, start:end], features[:, start:end], state)
                pieces.append(logits[0])
                start = end
    torch.testing.assert_close(torch.cat(pieces), full, atol=1e-5, rtol=0)


def test_bidirectional_models_have_no_step() -> None:
    for arch in ("bilstm", "transformer"):
        model = Tagger(tiny_config(arch))
        with pytest.raises(ValueError, match="not causal"):
            model.initial_state(1)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = tiny_config("lstm")
    model = Tagger(cfg).eval()
    vocab = ["<pad>", "<unk>"] + [f"w{i}" for i in range(VOCAB - 2)]
    path = save_checkpoint(
        tmp_path / "c.pt", task="tagging", model=model, cfg=cfg, vocab=vocab, labels=list(UNIVERSAL_TAGS)
    )
    loaded, ckpt = load_tagger(path)
    assert loaded.cfg == cfg and ckpt["labels"] == list(UNIVERSAL_TAGS)
    tokens, features, lengths = random_batch(3, 6)
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens, features, lengths), model(tokens, features, lengths))


# ----------------------------------------------------------------------------- scoring


def test_lookahead_table(conll: dict[str, Path]) -> None:
    data = load_tagging(conll, buckets=BUCKETS)
    torch.manual_seed(0)
    sents = data.splits["train"]
    # A causal model's tag for token i never depends on what follows: every k scores the same.
    causal = Tagger(tiny_config("gru", vocab_size=len(data.vocab))).eval()
    table = lookahead_accuracy(causal, sents, ks=(0, 1, 3))
    assert set(table) == {"0", "1", "3", "inf"} and len(set(table.values())) == 1
    # k = inf is the whole sentence: the same number as plain evaluation.
    bi = Tagger(tiny_config("bilstm", vocab_size=len(data.vocab))).eval()
    assert lookahead_accuracy(bi, sents)["inf"] == pytest.approx(evaluate(bi, sents)["accuracy"])
    # a lookahead longer than every sentence is the whole sentence too
    assert lookahead_accuracy(bi, sents, ks=(50,))["50"] == pytest.approx(evaluate(bi, sents)["accuracy"])


def test_choose_lookahead() -> None:
    assert choose_lookahead({"0": 0.90, "1": 0.9595, "2": 0.961, "inf": 0.962}) == 1
    assert choose_lookahead({"0": 0.90, "1": 0.95, "inf": 0.99}) == 1  # none close: the longest measured
    assert choose_lookahead({"0": 0.962, "1": 0.963, "inf": 0.962}) == 0


def test_evaluate_counts_unseen_tokens(conll: dict[str, Path]) -> None:
    data = load_tagging(conll, buckets=BUCKETS)
    model = Tagger(tiny_config("rnn", vocab_size=len(data.vocab))).eval()
    scores = evaluate(model, data.splits["test"])
    assert scores["tokens"] == 18 and scores["unseen_tokens"] == 3 * 4  # "a", "flurbing", "loudly", "!"
    batch = collate(data.splits["test"])
    assert int((batch.tokens == UNK_ID).sum()) == scores["unseen_tokens"]


# ----------------------------------------------------------------------------- command


def test_train_command(conll: dict[str, Path], tmp_path: Path, monkeypatch, capsys) -> None:
    tiny = TagSettings(
        max_epochs=2,
        patience=1,
        batch_size=4,
        lr=1e-2,
        lookahead_sentences=2,
        model=dict(word_dim=8, feature_dim=4, feature_buckets=BUCKETS, hidden_dim=12, n_heads=2, ff_dim=16),
    )
    monkeypatch.setitem(tagging_train.PROFILES, "quick", {a: tiny for a in ARCHS})
    argv = [
        "--arch",
        "gru",
        "bilstm",
        "--data-dir",
        str(conll["train"].parent),
        "--out",
        str(tmp_path),
        "--threads",
        "1",
        "--no-progress",
    ]
    # --data-dir expects <dir>/tagging/*.conll; point the splits at the files instead
    argv += [f"--{n}={p}" for n, p in conll.items()]
    assert tagging_train.main(argv) == 0
    out = capsys.readouterr().out
    assert "gru" in out and "bilstm" in out and "unseen" in out and "lookahead" in out
    model, ckpt = load_tagger(tmp_path / "tagging" / "bilstm" / "checkpoint.pt")
    assert model.cfg.feature_buckets == BUCKETS and ckpt["labels"] == list(UNIVERSAL_TAGS)
    m = ckpt["metrics"]
    assert {"test_accuracy", "test_accuracy_unseen", "dev_accuracy"} <= set(m)
    assert m["lookahead"]["recommended"] in range(5) and set(m["lookahead"]["test"]) == {"0", "1", "2", "3", "4", "inf"}
    assert "lookahead" not in load_tagger(tmp_path / "tagging" / "gru" / "checkpoint.pt")[1]["metrics"]


def test_train_command_reports_missing_files(tmp_path: Path, capsys) -> None:
    assert tagging_train.main(["--data-dir", str(tmp_path), "--no-progress"]) == 2
    assert "missing data file" in capsys.readouterr().err


def test_profiles_are_complete() -> None:
    for profile in tagging_train.PROFILES.values():
        assert set(profile) == set(ARCHS)
        for arch, settings_ in profile.items():
            cfg = TaggerConfig(arch=arch, **settings_.model)  # every profile builds a valid, exportable config
            assert cfg.n_features == N_FEATURES
