"""``seqserve export --task tagging``: tagging checkpoints -> verified ONNX graphs in the model repository.

    python -m export.tagging.onnx_export --arch all --runs ~/.cache/seqserve/runs --repository ./models

writes ``<repository>/tagging/<arch>/<version>/`` with

* ``model.onnx`` (every arch), the full-sequence graph:
  ``tokens`` int64 [batch, length], ``features`` int64 [batch, length, F],
  ``lengths`` int64 [batch] -> ``logits`` float32 [batch, length, n_tags];
* ``step.onnx`` (rnn, lstm, gru), one chunk of k >= 1 real tokens with the state:
  ``tokens`` int64 [batch, k], ``features`` int64 [batch, k, F],
  ``h`` float32 [layers, batch, hidden] (+ ``c`` for the LSTM) ->
  ``logits`` float32 [batch, k, n_tags], ``h_out`` (+ ``c_out``), same shapes as h;
  the first chunk starts from zeros;
* ``vocab.txt`` and ``manifest.json`` (features and streaming fields filled).

As for sentiment (``export.onnx_export``, whose exporter choice, shapes and
repository helpers are reused): nothing is published unless ONNX Runtime
matches PyTorch (max abs diff < 1e-4) at several batch sizes and lengths,
the step graph matches the PyTorch step from a random state, and streaming a
sentence through ``step.onnx`` in uneven chunks reproduces ``model.onnx``;
versions appear atomically.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from export.onnx_export import (
    EXAMPLE_SHAPE,
    EXPORTER,
    PARITY_ATOL,
    PARITY_SHAPES,
    ExportError,
    _package_versions,
    compare,
    export_graph,
    export_parser,
    export_runs,
    median_ms,
    name_io_dims,
    publish_version,
    run_session,
    sessions,
    torch_inputs,
    training_summary,
)
from export.tagging.model import TASK, Tagger, load_tagger, state_names, step_graph
from export.vocab import PAD, PAD_ID, UNK, UNK_ID
from seqserve.features import FEATURES_NAME, N_FEATURES
from seqserve.manifest import Manifest, TensorSpec, write_vocab
from seqserve.text import TOKENIZER_NAME

MODEL_FILE = "model.onnx"
STEP_FILE = "step.onnx"
VOCAB_FILE = "vocab.txt"
# (batch, k) chunks the step graph must reproduce PyTorch at, from a random state.
STEP_PARITY_SHAPES: tuple[tuple[int, int], ...] = ((1, 1), (4, 1), (3, 7), (1, 40), (8, 2))
STEP_EXAMPLE_SHAPE = (2, 3)  # traced example: matches no parity shape
LATENCY_LENGTHS = (10, 20, 40)  # prefix lengths whose re-encoding time a lookahead stream pays per token


# ----------------------------------------------------------------------------- specs


def full_specs(n_tags: int) -> tuple[list[TensorSpec], list[TensorSpec]]:
    inputs = [
        TensorSpec("tokens", "int64", ["batch", "length"]),
        TensorSpec("features", "int64", ["batch", "length", N_FEATURES]),
        TensorSpec("lengths", "int64", ["batch"]),
    ]
    return inputs, [TensorSpec("logits", "float32", ["batch", "length", n_tags])]


def step_specs(arch: str, n_tags: int, layers: int, hidden: int) -> tuple[list[TensorSpec], list[TensorSpec]]:
    states = state_names(arch)
    inputs = [
        TensorSpec("tokens", "int64", ["batch", "k"]),
        TensorSpec("features", "int64", ["batch", "k", N_FEATURES]),
        *[TensorSpec(name, "float32", [layers, "batch", hidden]) for name in states],
    ]
    outputs = [
        TensorSpec("logits", "float32", ["batch", "k", n_tags]),
        *[TensorSpec(f"{name}_out", "float32", [layers, "batch", hidden]) for name in states],
    ]
    return inputs, outputs


# ----------------------------------------------------------------------------- exporting


def _random_features(rng: np.random.Generator, shape: tuple[int, ...], buckets: int) -> np.ndarray:
    return rng.integers(1, buckets, size=(*shape, N_FEATURES)).astype(np.int64)


def full_inputs(B: int, T: int, vocab_size: int, buckets: int, seed: int) -> dict[str, np.ndarray]:
    """A padded batch; row 0 has the full length T, the others random lengths in [1, T]."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, T + 1, size=B).astype(np.int64)  # (B,)
    lengths[0] = T
    tokens = rng.integers(0, vocab_size, size=(B, T)).astype(np.int64)  # (B, T), includes <pad>/<unk> ids
    features = _random_features(rng, (B, T), buckets)  # (B, T, F)
    pad = np.arange(T)[None, :] >= lengths[:, None]  # (B, T)
    tokens[pad] = PAD_ID
    features[pad] = 0
    return {"tokens": tokens, "features": features, "lengths": lengths}


def step_inputs(
    arch: str, B: int, k: int, layers: int, hidden: int, vocab_size: int, buckets: int, seed: int
) -> dict[str, np.ndarray]:
    """k real tokens per row and a random (not zero) state, so a dropped state input cannot pass."""
    rng = np.random.default_rng(seed)
    feeds = {
        "tokens": rng.integers(1, vocab_size, size=(B, k)).astype(np.int64),  # (B, k)
        "features": _random_features(rng, (B, k), buckets),  # (B, k, F)
    }
    for name in state_names(arch):
        feeds[name] = rng.uniform(-1, 1, size=(layers, B, hidden)).astype(np.float32)  # (L, B, H)
    return feeds


def export_full(model: Tagger, path: Path) -> str:
    """Write model.onnx; returns the exporter used (export.onnx_export.EXPORTER: legacy for recurrent, dynamo else)."""
    cfg = model.cfg
    model.eval()
    B, T = EXAMPLE_SHAPE
    example = full_inputs(B, T, cfg.vocab_size, cfg.feature_buckets, seed=0)
    exporter = EXPORTER[cfg.arch]
    dynamic = {
        "tokens": {0: "batch", 1: "length"},
        "features": {0: "batch", 1: "length"},
        "lengths": {0: "batch"},
        "logits": {0: "batch", 1: "length"},
    }
    export_graph(model, example, ["logits"], dynamic, exporter, path)
    name_io_dims(path, [*sum(full_specs(cfg.n_labels), [])])
    return exporter


def export_step(model: Tagger, path: Path) -> str:
    """step.onnx for a causal tagger, with the legacy exporter (dynamo froze nn.RNN's sequence axis)."""
    cfg = model.cfg
    model.eval()
    B, k = STEP_EXAMPLE_SHAPE
    example = step_inputs(cfg.arch, B, k, cfg.n_layers, cfg.hidden_dim, cfg.vocab_size, cfg.feature_buckets, seed=0)
    states = state_names(cfg.arch)
    dynamic: dict[str, dict[int, str]] = {
        "tokens": {0: "batch", 1: "k"},
        "features": {0: "batch", 1: "k"},
        "logits": {0: "batch", 1: "k"},
    }
    for name in states:
        dynamic[name] = {1: "batch"}
        dynamic[f"{name}_out"] = {1: "batch"}
    export_graph(step_graph(model), example, ["logits", *(f"{n}_out" for n in states)], dynamic, "torchscript", path)
    name_io_dims(path, [*sum(step_specs(cfg.arch, cfg.n_labels, cfg.n_layers, cfg.hidden_dim), [])])
    return "torchscript"


# ----------------------------------------------------------------------------- verification


def check_full_parity(model: Tagger, path: Path, atol: float = PARITY_ATOL) -> float:
    """Largest |ORT - PyTorch| of model.onnx over PARITY_SHAPES (padded batches); raises ExportError above atol."""
    cfg, worst = model.cfg, 0.0
    model.eval()
    for session in sessions(path):
        for i, (B, T) in enumerate(PARITY_SHAPES):
            feeds = full_inputs(B, T, cfg.vocab_size, cfg.feature_buckets, seed=100 + i)
            with torch.no_grad():
                expected = model(*torch_inputs(feeds)).numpy()  # (B, T, n_tags)
            got = run_session(session, feeds, ["logits"], f"{path.name} at {B}x{T}")
            worst = max(worst, compare(f"{path.name} at batch x length {B}x{T}", got, [expected], atol))
    return worst


def check_step_parity(model: Tagger, path: Path, atol: float = PARITY_ATOL) -> float:
    """step.onnx vs the PyTorch step at STEP_PARITY_SHAPES, from random states."""
    cfg, worst = model.cfg, 0.0
    states = state_names(cfg.arch)
    outputs = ["logits", *(f"{n}_out" for n in states)]
    model.eval()
    for session in sessions(path):
        for i, (B, k) in enumerate(STEP_PARITY_SHAPES):
            feeds = step_inputs(
                cfg.arch, B, k, cfg.n_layers, cfg.hidden_dim, cfg.vocab_size, cfg.feature_buckets, 200 + i
            )
            t = torch_inputs(feeds)
            with torch.no_grad():
                logits, new_state = model.step(t[0], t[1], list(t[2:]))
            expected = [logits.numpy(), *(s.numpy() for s in new_state)]
            got = run_session(session, feeds, outputs, f"{path.name} at {B}x{k}")
            worst = max(worst, compare(f"{path.name} at batch x k {B}x{k}", got, expected, atol))
    return worst


def stream(
    step: ort.InferenceSession,
    arch: str,
    layers: int,
    hidden: int,
    tokens: np.ndarray,
    features: np.ndarray,
    cuts: list[int],
) -> np.ndarray:
    """Feed one sentence (T,), (T, F) through step.onnx in chunks ending at ``cuts``; returns (T, n_tags) logits."""
    state = {name: np.zeros((layers, 1, hidden), np.float32) for name in state_names(arch)}
    outputs = ["logits", *(f"{n}_out" for n in state)]
    pieces, start = [], 0
    for end in [*cuts, len(tokens)]:
        if end <= start:
            continue
        logits, *new = step.run(
            outputs, {"tokens": tokens[None, start:end], "features": features[None, start:end], **state}
        )
        state = dict(zip(state, new))
        pieces.append(logits[0])
        start = end
    return np.concatenate(pieces, axis=0)


def check_streaming(model: Tagger, full_path: Path, step_path: Path, atol: float = PARITY_ATOL) -> float:
    """A 37-token sentence through step.onnx in uneven chunks == model.onnx on the whole sentence (in ORT)."""
    cfg = model.cfg
    feeds = full_inputs(1, 37, cfg.vocab_size, cfg.feature_buckets, seed=300)
    full = ort.InferenceSession(str(full_path), providers=["CPUExecutionProvider"])
    (expected,) = full.run(["logits"], feeds)  # (1, T, n_tags)
    step = ort.InferenceSession(str(step_path), providers=["CPUExecutionProvider"])
    got = stream(
        step, cfg.arch, cfg.n_layers, cfg.hidden_dim, feeds["tokens"][0], feeds["features"][0], [1, 2, 5, 6, 18, 30]
    )
    worst = compare(f"{step_path.name} streamed in chunks vs {full_path.name}", [got], [expected[0]], atol)
    if not np.array_equal(got.argmax(-1), expected[0].argmax(-1)):
        raise ExportError(f"{step_path.name}: streamed tags differ from {full_path.name}")
    return worst


def measure_latency(model: Tagger, full_path: Path, step_path: Path | None) -> dict[str, float]:
    """ORT time per call, as the service runs it (1 thread): re-encoding a prefix of n tokens; one step of k=1."""
    cfg = model.cfg
    _, service_like = sessions(full_path)
    out = {
        f"full_ms_len{n}": median_ms(service_like, full_inputs(1, n, cfg.vocab_size, cfg.feature_buckets, 1))
        for n in LATENCY_LENGTHS
    }
    if step_path is not None:
        _, step = sessions(step_path)
        feeds = step_inputs(cfg.arch, 1, 1, cfg.n_layers, cfg.hidden_dim, cfg.vocab_size, cfg.feature_buckets, 1)
        out["step_ms_k1"] = median_ms(step, feeds)
    return out


# ----------------------------------------------------------------------------- manifest + repository


def build_manifest(
    model: Tagger, ckpt: dict[str, Any], version: int, exporter: str, latency: dict[str, float]
) -> Manifest:
    cfg = model.cfg
    if ckpt["vocab"][PAD_ID] != PAD or ckpt["vocab"][UNK_ID] != UNK:
        raise ExportError("checkpoint vocabulary does not start with <pad>, <unk>")
    metrics = ckpt.get("metrics", {})
    # quality is a flat name -> number map (ListModels sends it as map<string, double>).
    quality = {
        k: metrics[k]
        for k in (
            "test_accuracy",
            "test_accuracy_unseen",
            "test_accuracy_words",
            "test_accuracy_stream",
            "dev_accuracy",
            "dev_accuracy_unseen",
            "test_size",
            "dev_size",
            "test_unseen_tokens",
        )
        if k in metrics
    }
    lookahead = metrics.get("lookahead")
    files = {"model": MODEL_FILE, "vocab": VOCAB_FILE}
    if model.causal:
        files["step"] = STEP_FILE
        step_in, step_out = step_specs(cfg.arch, cfg.n_labels, cfg.n_layers, cfg.hidden_dim)
        streaming: dict[str, Any] = {
            "mode": "causal",
            "state": [{"name": n, "shape": [cfg.n_layers, cfg.hidden_dim]} for n in state_names(cfg.arch)],
            # the step graph's own signature, for readers that want it spelled out
            "step_inputs": [vars(s) for s in step_in],
            "step_outputs": [vars(s) for s in step_out],
            "latency_ms": latency,
        }
    else:
        if not lookahead:
            raise ExportError("a bidirectional checkpoint without its lookahead measurement; retrain it")
        for key, acc in lookahead["test"].items():
            quality[f"test_accuracy_lookahead_{key}"] = acc
        streaming = {
            "mode": "lookahead",
            "lookahead": int(lookahead["recommended"]),
            "accuracy_by_lookahead": {"dev": lookahead["dev"], "test": lookahead["test"]},
            "rule": f"smallest k within {lookahead['tolerance']} of whole-sentence dev accuracy",
            "latency_ms": latency,
        }
    training_info = training_summary(ckpt)
    inputs, outputs = full_specs(cfg.n_labels)
    return Manifest(
        task=TASK,
        arch=cfg.arch,
        version=version,
        labels=list(ckpt["labels"]),
        inputs=inputs,
        outputs=outputs,
        files=files,
        tokenizer={"name": TOKENIZER_NAME, "lowercase": True},
        special_tokens={"pad": PAD_ID, "unk": UNK_ID},
        quality=quality,
        training=training_info,
        model_config=cfg.to_dict(),
        parameters=sum(p.numel() for p in model.parameters()),
        exported_with={**_package_versions(), "exporter": exporter},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        features={"name": cfg.features_name, "buckets": cfg.feature_buckets, "n_features": cfg.n_features},
        streaming=streaming,
    )


def export_checkpoint(
    checkpoint_path: Path, repository: Path, version: int | None = None, measure: bool = True
) -> Path:
    """Export one tagging checkpoint as a new version in ``repository``; returns the version folder.

    ``version=None`` takes the next free integer. Raises FileExistsError if an
    explicit version exists, ExportError if ONNX Runtime disagrees with PyTorch.
    """
    model, ckpt = load_tagger(Path(checkpoint_path))
    cfg = model.cfg
    if cfg.features_name != FEATURES_NAME or cfg.n_features != N_FEATURES:
        raise ExportError(
            f"{checkpoint_path}: trained with features {cfg.features_name!r} x {cfg.n_features}; "
            f"the server computes {FEATURES_NAME!r} x {N_FEATURES}"
        )
    latency: dict[str, float] = {}

    def write_files(folder: Path) -> str:
        exporter = export_full(model, folder / MODEL_FILE)
        check_full_parity(model, folder / MODEL_FILE)
        step_path = None
        if model.causal:
            step_path = folder / STEP_FILE
            export_step(model, step_path)
            check_step_parity(model, step_path)
            check_streaming(model, folder / MODEL_FILE, step_path)
        if measure:
            latency.update(measure_latency(model, folder / MODEL_FILE, step_path))
        write_vocab(folder / VOCAB_FILE, list(ckpt["vocab"]))
        return exporter

    return publish_version(
        Path(repository) / TASK / cfg.arch,
        version,
        write_files,
        lambda v, exporter: build_manifest(model, ckpt, v, exporter, latency),
    )


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    return export_parser(
        TASK,
        "Export tagging checkpoints to ONNX (full-sequence graph, and a step graph for the causal "
        "models), verify them against PyTorch, and add them to a model repository.",
    )


def _summary(m: Manifest) -> str:
    q, st = m.quality, m.streaming
    waits = "causal (step.onnx)" if st["mode"] == "causal" else f"lookahead {st['lookahead']}"
    return (
        f"test acc {q.get('test_accuracy', float('nan')):.4f},"
        f" unseen {q.get('test_accuracy_unseen', float('nan')):.4f}; streaming {waits}"
    )


def main(argv: list[str] | None = None) -> int:
    return export_runs(TASK, build_parser().parse_args(argv), export_checkpoint, _summary)


if __name__ == "__main__":
    sys.exit(main())
