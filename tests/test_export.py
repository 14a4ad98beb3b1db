"""ONNX export into a model repository: files, manifest, parity with PyTorch, versions."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

import numpy as np  # noqa: E402

from export import onnx_export  # noqa: E402
from export.models import ARCHS, ModelConfig, SentimentClassifier, load_checkpoint, save_checkpoint  # noqa: E402
from export.onnx_export import ExportError, export_checkpoint, main  # noqa: E402
from seqserve.manifest import Manifest, read_vocab  # noqa: E402
from seqserve.text import TOKENIZER_NAME  # noqa: E402

pytestmark = pytest.mark.slow

VOCAB = ["<pad>", "<unk>"] + [f"w{i}" for i in range(48)]
SHAPES = [(1, 1), (32, 20), (1, 128), (7, 33)]


def make_checkpoint(root: Path, arch: str, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    cfg = ModelConfig(
        arch=arch, vocab_size=len(VOCAB), n_labels=2, embed_dim=12, hidden_dim=16, n_layers=2, n_heads=2, ff_dim=24
    )
    return save_checkpoint(
        root / "sentiment" / arch / "checkpoint.pt",
        task="sentiment",
        model=SentimentClassifier(cfg),
        cfg=cfg,
        vocab=VOCAB,
        labels=["negative", "positive"],
        metrics={"dev_accuracy": 0.7, "test_accuracy": 0.65, "test_size": 100, "dev_size": 90},
        training={"profile": "quick", "epochs": 3, "seed": seed, "train_size": 500, "dev_size": 90, "test_size": 100},
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    for arch in ARCHS:
        make_checkpoint(root, arch)
    return root


@pytest.fixture(scope="module")
def repository(runs: Path, tmp_path_factory) -> Path:
    """All five exported once (the dynamo Transformer export takes a few seconds)."""
    repo = tmp_path_factory.mktemp("models")
    for arch in ARCHS:
        export_checkpoint(runs / "sentiment" / arch / "checkpoint.pt", repo)
    return repo


def mixed_batch(B: int, T: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, T + 1, size=B).astype(np.int64)
    lengths[0] = T
    tokens = rng.integers(1, len(VOCAB), size=(B, T)).astype(np.int64)
    tokens[np.arange(T)[None, :] >= lengths[:, None]] = 0
    return tokens, lengths


@pytest.mark.parametrize("arch", ARCHS)
def test_exported_version_is_complete_and_valid(arch: str, runs: Path, repository: Path) -> None:
    version_dir = repository / "sentiment" / arch / "1"
    assert sorted(p.name for p in version_dir.iterdir()) == ["manifest.json", "model.onnx", "vocab.txt"]
    m = Manifest.load(version_dir)
    assert (m.task, m.arch, m.version) == ("sentiment", arch, 1)
    assert m.labels == ["negative", "positive"]
    assert [(t.name, t.dtype, t.shape) for t in m.inputs] == [
        ("tokens", "int64", ["batch", "length"]),
        ("lengths", "int64", ["batch"]),
    ]
    assert [(t.name, t.dtype, t.shape) for t in m.outputs] == [("logits", "float32", ["batch", 2])]
    assert m.files == {"model": "model.onnx", "vocab": "vocab.txt"}
    assert m.tokenizer == {"name": TOKENIZER_NAME, "lowercase": True}
    assert m.special_tokens == {"pad": 0, "unk": 1}
    assert m.quality["test_accuracy"] == 0.65 and m.quality["test_size"] == 100
    assert m.training["profile"] == "quick" and m.training["train_size"] == 500
    assert m.model_config["arch"] == arch and m.parameters > 0
    assert {"torch", "onnx", "onnxruntime", "opset"} <= set(m.exported_with)
    assert int(m.exported_with["opset"]) >= 17
    assert m.created.endswith("+00:00")
    assert read_vocab(version_dir / "vocab.txt") == VOCAB
    # no leftovers from the atomic write
    assert [p.name for p in version_dir.parent.iterdir()] == ["1"]


@pytest.mark.parametrize("arch", ARCHS)
def test_onnx_matches_pytorch_at_many_shapes(arch: str, runs: Path, repository: Path) -> None:
    import onnx

    model, _ = load_checkpoint(runs / "sentiment" / arch / "checkpoint.pt")
    path = repository / "sentiment" / arch / "1" / "model.onnx"
    graph = onnx.load(str(path)).graph
    io_values = [*graph.input, *graph.output]
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in io_values}
    assert dims == {"tokens": ["batch", "length"], "lengths": ["batch"], "logits": ["batch", 2]}

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for i, (B, T) in enumerate(SHAPES):
        tokens, lengths = mixed_batch(B, T, seed=i)
        (got,) = session.run(None, {"tokens": tokens, "lengths": lengths})
        with torch.no_grad():
            want = model(torch.from_numpy(tokens), torch.from_numpy(lengths)).numpy()
        assert got.shape == (B, 2) and got.dtype == np.float32
        assert np.abs(got - want).max() < 1e-4, (arch, B, T)


def test_versions_increment_and_never_overwrite(runs: Path, tmp_path: Path) -> None:
    ckpt = runs / "sentiment" / "lstm" / "checkpoint.pt"
    assert export_checkpoint(ckpt, tmp_path).name == "1"
    assert export_checkpoint(ckpt, tmp_path).name == "2"
    assert export_checkpoint(ckpt, tmp_path, version=7).name == "7"
    assert export_checkpoint(ckpt, tmp_path).name == "8"
    with pytest.raises(FileExistsError):
        export_checkpoint(ckpt, tmp_path, version=2)
    assert Manifest.load(tmp_path / "sentiment" / "lstm" / "8").version == 8
    assert sorted(p.name for p in (tmp_path / "sentiment" / "lstm").iterdir()) == ["1", "2", "7", "8"]


def test_export_refuses_a_graph_that_disagrees(runs: Path, tmp_path: Path, monkeypatch) -> None:
    """A graph that is not the checkpoint's model must fail parity and leave nothing behind."""
    real_export = onnx_export.export_onnx

    def export_other_weights(model, arch, vocab_size, n_labels, path):
        other = SentimentClassifier(model.cfg)  # same shapes, fresh random weights
        return real_export(other, arch, vocab_size, n_labels, path)

    monkeypatch.setattr(onnx_export, "export_onnx", export_other_weights)
    with pytest.raises(ExportError, match="differs from PyTorch"):
        export_checkpoint(runs / "sentiment" / "gru" / "checkpoint.pt", tmp_path)
    assert list((tmp_path / "sentiment" / "gru").iterdir()) == []


def test_cli(runs: Path, tmp_path: Path, capsys) -> None:
    repo = tmp_path / "models"
    assert main(["--task", "sentiment", "--arch", "gru", "--runs", str(runs), "--repository", str(repo)]) == 0
    assert main(["--arch", "gru", "--runs", str(runs), "--repository", str(repo), "--version", "5"]) == 0
    assert sorted(p.name for p in (repo / "sentiment" / "gru").iterdir()) == ["1", "5"]
    assert "sentiment/gru v5" in capsys.readouterr().out
    # an explicit version that exists fails instead of overwriting
    assert main(["--arch", "gru", "--runs", str(runs), "--repository", str(repo), "--version", "5"]) == 1
    # asking for a checkpoint that was never trained fails
    assert main(["--arch", "gru", "--runs", str(tmp_path / "nothing"), "--repository", str(repo)]) == 1
