"""``seqserve train`` end to end on a tiny synthetic corpus, and the vocabulary."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from export.models import load_checkpoint  # noqa: E402
from export.train import main  # noqa: E402
from export.vocab import PAD, UNK, Vocab  # noqa: E402

POSITIVE = ["good", "great", "lovely", "superb", "moving"]
NEGATIVE = ["bad", "awful", "dull", "poor", "boring"]
FILLER = "the a movie film plot was is it and of to very really , .".split()


def write_corpus(root: Path, sizes: dict[str, int] | None = None, seed: int = 0) -> dict[str, Path]:
    """A corpus where one sentiment word decides the label: learnable in a couple of epochs."""
    rng = random.Random(seed)
    files = {}
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (sizes or {"train": 240, "dev": 60, "test": 60}).items():
        lines = []
        for _ in range(n):
            label = rng.choice(["positive", "negative"])
            words = [rng.choice(FILLER) for _ in range(rng.randint(2, 12))]
            words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label == "positive" else NEGATIVE))
            lines.append(f"{label}\t{' '.join(words).capitalize()}\n")
        files[split] = root / f"{split}.tsv"
        files[split].write_text("".join(lines), encoding="utf-8")
    return files


def args_for(files: dict[str, Path], out: Path, *archs: str, epochs: int = 2) -> list[str]:
    return [
        "--task", "sentiment", "--arch", *archs, "--profile", "quick",
        "--train", str(files["train"]), "--dev", str(files["dev"]), "--test", str(files["test"]),
        "--out", str(out), "--threads", "1", "--max-epochs", str(epochs), "--seed", "7", "--no-progress",
    ]  # fmt: skip


def test_train_end_to_end(tmp_path: Path, capsys) -> None:
    files = write_corpus(tmp_path / "data")
    out = tmp_path / "runs"
    assert main(args_for(files, out, "lstm", "transformer", epochs=4)) == 0
    table = capsys.readouterr().out
    assert "lstm" in table and "transformer" in table and "test acc" in table
    for arch in ("lstm", "transformer"):
        model, ckpt = load_checkpoint(out / "sentiment" / arch / "checkpoint.pt")
        assert ckpt["task"] == "sentiment" and ckpt["config"]["arch"] == arch
        assert ckpt["labels"] == ["negative", "positive"]
        assert ckpt["vocab"][:2] == [PAD, UNK] and "superb" in ckpt["vocab"]
        assert ckpt["training"]["profile"] == "quick" and ckpt["training"]["seed"] == 7
        assert ckpt["training"]["train_size"] == 240
        metrics = json.loads((out / "sentiment" / arch / "metrics.json").read_text())["metrics"]
        assert metrics == ckpt["metrics"]
        assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["test_size"] == 60
        logits = model(torch.tensor([[2, 3, 4]]), torch.tensor([3]))
        assert logits.shape == (1, 2)
    # one sentiment word decides the label: a few tiny epochs learn most of it
    lstm = json.loads((out / "sentiment" / "lstm" / "metrics.json").read_text())["metrics"]
    assert lstm["dev_accuracy"] > 0.7


def test_reruns_reproduce(tmp_path: Path) -> None:
    files = write_corpus(tmp_path / "data", {"train": 120, "dev": 30, "test": 30})
    for run in ("a", "b"):
        assert main(args_for(files, tmp_path / run, "gru")) == 0
    a, _ = load_checkpoint(tmp_path / "a" / "sentiment" / "gru" / "checkpoint.pt")
    b, _ = load_checkpoint(tmp_path / "b" / "sentiment" / "gru" / "checkpoint.pt")
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(pa, pb), name


def test_default_data_dir_layout_and_missing_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_corpus(data / "sentiment", {"train": 60, "dev": 20, "test": 20})
    out = tmp_path / "runs"
    common = ["--arch", "rnn", "--out", str(out), "--threads", "1", "--max-epochs", "1", "--no-progress"]
    assert main(["--data-dir", str(data), *common]) == 0
    assert (out / "sentiment" / "rnn" / "checkpoint.pt").is_file()
    assert main(["--data-dir", str(tmp_path / "nowhere"), *common]) == 2


def test_vocab() -> None:
    sentences = [["b", "a", "a"], ["c", "a", "b"], ["d"]]
    vocab = Vocab.build(sentences, min_count=1)
    assert vocab.tokens == [PAD, UNK, "a", "b", "c", "d"]  # by frequency, ties alphabetical
    assert Vocab.build(sentences, min_count=2).tokens == [PAD, UNK, "a", "b"]
    assert Vocab.build(sentences, max_size=3).tokens == [PAD, UNK, "a"]
    assert vocab.encode(["a", "zzz"]) == [2, 1]
    # the server's tokenizer: lower-cased, punctuation split off
    assert vocab.encode_text("A, B!") == [2, 1, 3, 1]
    with pytest.raises(ValueError):
        Vocab(["a", PAD, UNK])
