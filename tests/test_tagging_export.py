"""Tagging export: model.onnx / step.onnx contract in ONNX Runtime, streaming == full graph in any
chunking, padding invariance, manifest, refusal of unfaithful graphs, CLI (tiny random-init models)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from export.corpora.universal import UNIVERSAL_TAGS  # noqa: E402
from export.models import ARCHS, save_checkpoint  # noqa: E402
from export.onnx_export import ExportError  # noqa: E402
from export.tagging import onnx_export as tag_export  # noqa: E402
from export.tagging.model import CAUSAL_ARCHS, StepGraph, Tagger, TaggerConfig  # noqa: E402
from export.tagging.onnx_export import export_checkpoint, full_inputs, main, stream  # noqa: E402
from seqserve.features import FEATURES_NAME, N_FEATURES  # noqa: E402
from seqserve.manifest import Manifest, read_vocab  # noqa: E402
from seqserve.text import TOKENIZER_NAME  # noqa: E402

pytestmark = pytest.mark.slow

VOCAB = ["<pad>", "<unk>"] + [f"w{i}" for i in range(48)]
BUCKETS, LAYERS, HIDDEN = 64, 2, 16
LOOKAHEAD = {
    "recommended": 2,
    "tolerance": 0.003,
    "sentences": 10,
    "dev": {"0": 0.90, "1": 0.95, "2": 0.96, "3": 0.96, "4": 0.96, "inf": 0.962},
    "test": {"0": 0.91, "1": 0.95, "2": 0.96, "3": 0.96, "4": 0.96, "inf": 0.961},
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models; spinning threads on shared cores cost 10x+ (measured)
    yield
    torch.set_num_threads(before)


def make_checkpoint(root: Path, arch: str, seed: int = 0, **overrides) -> Path:
    torch.manual_seed(seed)
    cfg = TaggerConfig(
        arch=arch,
        vocab_size=len(VOCAB),
        n_labels=len(UNIVERSAL_TAGS),
        word_dim=8,
        feature_dim=4,
        feature_buckets=BUCKETS,
        hidden_dim=HIDDEN,
        n_layers=LAYERS,
        n_heads=2,
        ff_dim=24,
        **overrides,
    )
    metrics = {"dev_accuracy": 0.95, "test_accuracy": 0.94, "test_accuracy_unseen": 0.8, "test_size": 1000}
    if arch not in CAUSAL_ARCHS:
        metrics["lookahead"] = LOOKAHEAD
    return save_checkpoint(
        root / "tagging" / arch / "checkpoint.pt",
        task="tagging",
        model=Tagger(cfg),
        cfg=cfg,
        vocab=VOCAB,
        labels=list(UNIVERSAL_TAGS),
        metrics=metrics,
        training={"profile": "quick", "epochs": 2, "seed": seed},
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    for arch in ARCHS:
        make_checkpoint(root, arch)
    return root


@pytest.fixture(scope="module")
def repository(runs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("models")
    for arch in ARCHS:
        export_checkpoint(runs / "tagging" / arch / "checkpoint.pt", repo, measure=False)
    return repo


@pytest.fixture(scope="module")
def graphs(repository: Path) -> dict[str, dict[str, ort.InferenceSession]]:
    out: dict[str, dict[str, ort.InferenceSession]] = {}
    for arch in ARCHS:
        version = repository / "tagging" / arch / "1"
        out[arch] = {
            role: ort.InferenceSession(str(version / name), providers=["CPUExecutionProvider"])
            for role, name in Manifest.load(version).files.items()
            if name.endswith(".onnx")
        }
    return out


# ----------------------------------------------------------------------------- files and manifest


@pytest.mark.parametrize("arch", ARCHS)
def test_version_is_complete_and_manifest_follows_the_contract(arch: str, repository: Path) -> None:
    version = repository / "tagging" / arch / "1"
    m = Manifest.load(version)
    causal = arch in CAUSAL_ARCHS
    assert (m.task, m.arch, m.version) == ("tagging", arch, 1)
    assert m.labels == list(UNIVERSAL_TAGS)
    assert m.files == {"model": "model.onnx", "vocab": "vocab.txt", **({"step": "step.onnx"} if causal else {})}
    assert sorted(p.name for p in version.iterdir()) == sorted([*m.files.values(), "manifest.json"])
    assert read_vocab(version / "vocab.txt") == VOCAB
    assert m.tokenizer == {"name": TOKENIZER_NAME, "lowercase": True}
    assert m.special_tokens == {"pad": 0, "unk": 1}
    assert m.features == {"name": FEATURES_NAME, "buckets": BUCKETS, "n_features": N_FEATURES}
    assert [(s.name, s.dtype, s.shape) for s in m.inputs] == [
        ("tokens", "int64", ["batch", "length"]),
        ("features", "int64", ["batch", "length", N_FEATURES]),
        ("lengths", "int64", ["batch"]),
    ]
    assert [(s.name, s.dtype, s.shape) for s in m.outputs] == [("logits", "float32", ["batch", "length", 12])]
    # quality travels as map<string, double>: flat numbers only
    assert all(isinstance(v, (int, float)) for v in m.quality.values())
    assert m.quality["test_accuracy"] == 0.94 and m.quality["test_accuracy_unseen"] == 0.8
    if causal:
        states = [{"name": "h", "shape": [LAYERS, HIDDEN]}] + (
            [{"name": "c", "shape": [LAYERS, HIDDEN]}] if arch == "lstm" else []
        )
        assert m.streaming["mode"] == "causal" and m.streaming["state"] == states
    else:
        assert m.streaming["mode"] == "lookahead" and m.streaming["lookahead"] == 2
        assert m.quality["test_accuracy_lookahead_0"] == 0.91 and m.quality["test_accuracy_lookahead_inf"] == 0.961
    assert not list((repository / "tagging" / arch).glob(".tmp-*"))


@pytest.mark.parametrize("arch", ARCHS)
def test_graph_io_names_and_symbolic_dims(arch: str, repository: Path) -> None:
    version = repository / "tagging" / arch / "1"

    def dims(value) -> list:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    g = onnx.load(str(version / "model.onnx")).graph
    assert {v.name: dims(v) for v in g.input} == {
        "tokens": ["batch", "length"],
        "features": ["batch", "length", N_FEATURES],
        "lengths": ["batch"],
    }
    assert {v.name: dims(v) for v in g.output} == {"logits": ["batch", "length", 12]}
    if arch in CAUSAL_ARCHS:
        g = onnx.load(str(version / "step.onnx")).graph
        states = ["h", "c"] if arch == "lstm" else ["h"]
        assert {v.name: dims(v) for v in g.input} == {
            "tokens": ["batch", "k"],
            "features": ["batch", "k", N_FEATURES],
            **{s: [LAYERS, "batch", HIDDEN] for s in states},
        }
        assert {v.name: dims(v) for v in g.output} == {
            "logits": ["batch", "k", 12],
            **{f"{s}_out": [LAYERS, "batch", HIDDEN] for s in states},
        }
    else:
        assert not (version / "step.onnx").exists()


# ----------------------------------------------------------------------------- the graphs in ONNX Runtime


@pytest.mark.parametrize("arch", ARCHS)
def test_full_graph_padding_never_changes_a_result(arch: str, graphs) -> None:
    session = graphs[arch]["model"]
    for B, T in [(1, 1), (6, 9), (3, 41)]:
        feeds = full_inputs(B, T, len(VOCAB), BUCKETS, seed=B + T)
        (batched,) = session.run(["logits"], feeds)  # (B, T, 12)
        assert batched.shape == (B, T, 12) and batched.dtype == np.float32
        for b in range(B):
            n = int(feeds["lengths"][b])
            alone = {
                "tokens": feeds["tokens"][b : b + 1, :n],
                "features": feeds["features"][b : b + 1, :n],
                "lengths": feeds["lengths"][b : b + 1],
            }
            (single,) = session.run(["logits"], alone)
            np.testing.assert_allclose(batched[b, :n], single[0], atol=1e-5, rtol=0)
            assert np.array_equal(batched[b, :n].argmax(-1), single[0].argmax(-1))


@settings(max_examples=30, deadline=None)
@given(arch=st.sampled_from(CAUSAL_ARCHS), T=st.integers(1, 45), seed=st.integers(0, 10_000), data=st.data())
def test_streaming_in_any_chunking_gives_the_full_graphs_tags(arch: str, T: int, seed: int, data, graphs) -> None:
    feeds = full_inputs(1, T, len(VOCAB), BUCKETS, seed=seed)
    (full,) = graphs[arch]["model"].run(["logits"], feeds)  # (1, T, 12)
    cuts = sorted(data.draw(st.sets(st.integers(1, T), max_size=T), label="cuts"))
    streamed = stream(graphs[arch]["step"], arch, LAYERS, HIDDEN, feeds["tokens"][0], feeds["features"][0], cuts)
    np.testing.assert_allclose(streamed, full[0], atol=1e-4, rtol=0)
    assert np.array_equal(streamed.argmax(-1), full[0].argmax(-1))


@pytest.mark.parametrize("arch", CAUSAL_ARCHS)
def test_step_rows_are_independent_streams(arch: str, graphs) -> None:
    # The server may batch different streams' chunks (same k) into one step call.
    step = graphs[arch]["step"]
    states = ["h", "c"] if arch == "lstm" else ["h"]
    outputs = ["logits", *(f"{s}_out" for s in states)]
    rng = np.random.default_rng(0)
    feeds = full_inputs(3, 4, len(VOCAB), BUCKETS, seed=5)
    batch = {
        "tokens": np.maximum(feeds["tokens"], 1),
        "features": np.maximum(feeds["features"], 1),
        **{s: rng.uniform(-1, 1, (LAYERS, 3, HIDDEN)).astype(np.float32) for s in states},
    }
    together = step.run(outputs, batch)
    for b in range(3):
        alone = step.run(
            outputs,
            {
                "tokens": batch["tokens"][b : b + 1],
                "features": batch["features"][b : b + 1],
                **{s: batch[s][:, b : b + 1] for s in states},
            },
        )
        np.testing.assert_allclose(together[0][b], alone[0][0], atol=1e-5, rtol=0)
        for i in range(1, len(outputs)):
            np.testing.assert_allclose(together[i][:, b], alone[i][:, 0], atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- refusals and CLI


def test_export_refuses_a_full_graph_that_disagrees(runs: Path, tmp_path: Path, monkeypatch) -> None:
    original = tag_export.export_full

    def export_other_weights(model: Tagger, path: Path) -> str:
        other = Tagger(model.cfg).eval()  # same shapes, fresh random weights
        return original(other, path)

    monkeypatch.setattr(tag_export, "export_full", export_other_weights)
    with pytest.raises(ExportError, match="differs from PyTorch"):
        export_checkpoint(runs / "tagging" / "bilstm" / "checkpoint.pt", tmp_path, measure=False)
    assert not any((tmp_path / "tagging" / "bilstm").iterdir())  # no version, no temp folder


def test_export_refuses_a_step_graph_that_ignores_the_state(runs: Path, tmp_path: Path, monkeypatch) -> None:
    class Stateless(StepGraph):
        def forward(self, tokens, features, h):
            return super().forward(tokens, features, torch.zeros_like(h))

    monkeypatch.setattr(tag_export, "step_graph", Stateless)
    with pytest.raises(ExportError, match="step.onnx"):
        export_checkpoint(runs / "tagging" / "gru" / "checkpoint.pt", tmp_path, measure=False)
    assert not any((tmp_path / "tagging" / "gru").iterdir())


def test_export_refuses_a_model_without_features(tmp_path: Path) -> None:
    ckpt = make_checkpoint(tmp_path / "runs", "rnn", n_features=0)
    with pytest.raises(ExportError, match="features"):
        export_checkpoint(ckpt, tmp_path / "models", measure=False)


def test_cli_versions_and_latency(runs: Path, tmp_path: Path, capsys) -> None:
    repo = tmp_path / "models"
    assert main(["--arch", "rnn", "--runs", str(runs), "--repository", str(repo)]) == 0
    assert main(["--arch", "rnn", "--runs", str(runs), "--repository", str(repo)]) == 0
    out = capsys.readouterr().out
    assert "tagging/rnn v1" in out and "tagging/rnn v2" in out and "causal" in out
    assert Manifest.load(repo / "tagging" / "rnn" / "2").streaming["latency_ms"]["step_ms_k1"] > 0
    assert main(["--arch", "rnn", "--runs", str(runs), "--repository", str(repo), "--version", "2"]) == 1
    assert main(["--arch", "lstm", "--runs", str(tmp_path / "none"), "--repository", str(repo)]) == 1
