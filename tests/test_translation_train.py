"""Translation training CLI on a tiny parallel corpus: checkpoint + metrics.json (BLEU greedy and beam),
profiles, and the checkpoint loads back with its subword models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sacrebleu")

from export.models import ARCHS  # noqa: E402
from export.translation.model import load_seq2seq  # noqa: E402
from export.translation.train import PROFILES, main  # noqa: E402
from seqserve.subword import SubwordModel  # noqa: E402

PAIRS = [
    ("God saw the light.", "Y vió Dios la luz."),
    ("God said, let there be light.", "Y dijo Dios: Sea la luz."),
    ("The earth was empty.", "Y la tierra estaba vacía."),
    ("There was light.", "Y fué la luz."),
    ("God created the earth.", "Dios crió la tierra."),
    ("The light was good.", "La luz era buena."),
]


def write(path: Path, pairs: list[tuple[str, str]]) -> Path:
    path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    return path


def test_profiles_cover_every_arch() -> None:
    for profile in ("quick", "full"):
        assert set(PROFILES[profile]) == set(ARCHS)
    assert PROFILES["full"]["gru"].max_minutes and PROFILES["full"]["gru"].max_minutes <= 60  # bounded by time


@pytest.mark.parametrize("arch", ["gru", "transformer"])
def test_train_cli_writes_checkpoint_and_bleu(tmp_path: Path, arch: str) -> None:
    files = {n: write(tmp_path / f"{n}.tsv", PAIRS * (4 if n == "train" else 1)) for n in ("train", "dev", "test")}
    out = tmp_path / "runs"
    argv = [
        "--arch", arch, "--profile", "quick", "--out", str(out), "--no-progress", "--max-epochs", "2",
        *[f"--{n}={p}" for n, p in files.items()],
        "--set", "source_vocab=60", "--set", "target_vocab=60", "--set", "model.hidden_dim=16",
        "--set", "model.embed_dim=16", "--set", "model.n_heads=2", "--set", "model.teacher_forcing=0.8",
    ]
    assert main(argv) == 0
    run = out / "translation" / arch
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["metrics"]
    for key in ("test_bleu_greedy", "test_bleu_beam", "dev_bleu"):
        assert 0.0 <= metrics[key] <= 100.0
    assert metrics["test_size"] == len(PAIRS) and metrics["beam_size"] == 4
    model, ckpt = load_seq2seq(run / "checkpoint.pt")
    target = SubwordModel.from_dict(ckpt["training"]["subwords"]["target"])
    assert len(target) == model.cfg.tgt_vocab_size and model.cfg.teacher_forcing == 0.8
