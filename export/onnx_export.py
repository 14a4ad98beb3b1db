"""``seqserve export``: checkpoints -> verified ONNX models in the model repository.

    seqserve export --task sentiment --arch all --runs ~/.cache/seqserve/runs --repository ./models

writes ``<repository>/<task>/<arch>/<version>/{model.onnx, vocab.txt, manifest.json}``.

Two rules keep a served model honest:

* **Parity or nothing.** The ONNX graph is run by ONNX Runtime on batches of
  mixed lengths at several batch sizes and lengths, and must match PyTorch
  (max abs diff < 1e-4) or the export fails. Exporters can silently freeze a
  sequence length into a graph; only a check at other shapes catches that.
* **Atomic versions.** Files are written to a hidden temp folder next to the
  version and renamed into place, so a server scanning the repository never
  sees a half-written version.

Exporter per architecture (``EXPORTER``, measured with torch 2.13 and
onnxruntime 1.31): the recurrent
models use the TorchScript (legacy) exporter, because the dynamo exporter froze
the sequence axis of nn.RNN and of the BiLSTM's backward pass to the example
length; the Transformer uses dynamo, which is the maintained exporter and was
exact at every shape.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import logging
import shutil
import statistics
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn

from export import paths
from export.models import ARCHS, load_checkpoint
from export.vocab import PAD, PAD_ID, UNK, UNK_ID
from seqserve.manifest import Manifest, TensorSpec, write_vocab
from seqserve.text import TOKENIZER_NAME

OPSET = 18
MODEL_FILE = "model.onnx"
VOCAB_FILE = "vocab.txt"
PARITY_ATOL = 1e-4
# (batch, length) pairs the exported graph must reproduce PyTorch at; each has
# rows of random lengths, so padding, single tokens and long rows are all covered.
PARITY_SHAPES: tuple[tuple[int, int], ...] = ((1, 1), (32, 20), (1, 128), (7, 33), (5, 2))
# The example traced at export: sizes that match none of the parity shapes, so
# a length or batch size baked into the graph cannot pass the check by luck.
EXAMPLE_SHAPE = (3, 11)

EXPORTER: dict[str, str] = {
    "rnn": "torchscript",
    "lstm": "torchscript",
    "gru": "torchscript",
    "bilstm": "torchscript",
    "transformer": "dynamo",
}


class ExportError(RuntimeError):
    """The exported graph is not a faithful copy of the PyTorch model."""


# ----------------------------------------------------------------------------- exporting


def _example_inputs(vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    B, T = EXAMPLE_SHAPE
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([T] + [max(1, T - 3 * i) for i in range(1, B)], dtype=torch.long)  # (B,)
    tokens = torch.randint(2, max(3, vocab_size), (B, T), generator=g)  # (B, T)
    tokens[torch.arange(T).unsqueeze(0) >= lengths.unsqueeze(1)] = PAD_ID
    return tokens, lengths


def _export_torchscript(model: nn.Module, example: tuple[torch.Tensor, ...], path: Path) -> None:
    with warnings.catch_warnings():
        # The deprecation notice, and a GRU batch-size warning that the parity check makes moot.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            example,
            str(path),
            input_names=["tokens", "lengths"],
            output_names=["logits"],
            dynamic_axes={"tokens": {0: "batch", 1: "length"}, "lengths": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )


def _export_dynamo(model: nn.Module, example: tuple[torch.Tensor, ...], path: Path) -> None:
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    # dynamo narrates every step (prints and log warnings); keep the command's output readable.
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    try:
        quiet = contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO())
        with warnings.catch_warnings(), quiet[0], quiet[1]:
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model,
                example,
                input_names=["tokens", "lengths"],
                output_names=["logits"],
                dynamic_shapes={"tokens": {0: batch, 1: length}, "lengths": {0: batch}},
                opset_version=OPSET,
                dynamo=True,
                verbose=False,
            )
    finally:
        onnx_log.setLevel(level)
    program.save(str(path))


def sentiment_specs(n_labels: int) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The classifier graph's inputs and outputs, as the manifest states them."""
    inputs = [TensorSpec("tokens", "int64", ["batch", "length"]), TensorSpec("lengths", "int64", ["batch"])]
    return inputs, [TensorSpec("logits", "float32", ["batch", n_labels])]


def export_onnx(model: nn.Module, arch: str, vocab_size: int, n_labels: int, path: Path) -> str:
    """Export ``model`` (eval mode) to ``path``; returns the exporter used."""
    model.eval()
    example = _example_inputs(vocab_size)
    exporter = EXPORTER[arch]
    if exporter == "dynamo":
        _export_dynamo(model, example, path)
    else:
        _export_torchscript(model, example, path)
    name_io_dims(path, [*sum(sentiment_specs(n_labels), [])])
    return exporter


# ----------------------------------------------------------------------------- verification


def parity_inputs(vocab_size: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Batches at PARITY_SHAPES; row 0 uses the full length, the rest random lengths in [1, T]."""
    rng = np.random.default_rng(seed)
    batches = []
    for B, T in PARITY_SHAPES:
        lengths = rng.integers(1, T + 1, size=B).astype(np.int64)  # (B,)
        lengths[0] = T
        tokens = rng.integers(0, vocab_size, size=(B, T)).astype(np.int64)  # (B, T), includes <unk> and <pad> ids
        tokens[np.arange(T)[None, :] >= lengths[:, None]] = PAD_ID
        batches.append((tokens, lengths))
    return batches


def check_parity(model: nn.Module, onnx_path: Path, vocab_size: int, atol: float = PARITY_ATOL) -> float:
    """Largest |ORT - PyTorch| over PARITY_SHAPES; raises ExportError above ``atol``.

    Runs a plain session and one configured like the service (one intra-op
    thread, basic graph optimizations), since fusions differ between them.
    """
    plain = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    service_like = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    worst = 0.0
    model.eval()
    for tokens, lengths in parity_inputs(vocab_size):
        with torch.no_grad():
            expected = model(torch.from_numpy(tokens), torch.from_numpy(lengths)).numpy()  # (B, n_labels)
        for session in (plain, service_like):
            try:
                (got,) = session.run(["logits"], {"tokens": tokens, "lengths": lengths})
            except Exception as exc:  # e.g. a length frozen into a Reshape or Concat
                raise ExportError(
                    f"{onnx_path}: ONNX Runtime failed at batch x length {tokens.shape[0]}x{tokens.shape[1]}: {exc}"
                ) from exc
            if got.shape != expected.shape or got.dtype != np.float32:
                raise ExportError(
                    f"{onnx_path}: ONNX output {got.dtype}{got.shape} at input {tokens.shape}, "
                    f"expected float32{expected.shape}"
                )
            diff = float(np.abs(got - expected).max())
            if not diff < atol:  # also catches NaN
                raise ExportError(
                    f"{onnx_path}: ONNX Runtime differs from PyTorch by {diff:.3g} (> {atol}) at batch x length "
                    f"{tokens.shape[0]}x{tokens.shape[1]}; refusing to publish this export"
                )
            worst = max(worst, diff)
    return worst


# ----------------------------------------------------------------------------- repository


def existing_versions(arch_dir: Path) -> list[int]:
    if not arch_dir.is_dir():
        return []
    return sorted(int(p.name) for p in arch_dir.iterdir() if p.is_dir() and p.name.isdigit() and int(p.name) > 0)


def next_version(arch_dir: Path) -> int:
    versions = existing_versions(arch_dir)
    return versions[-1] + 1 if versions else 1


def _package_versions() -> dict[str, str]:
    return {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "opset": str(OPSET),
    }


_TRAINING_KEYS = (
    "profile", "epochs", "best_epoch", "seed", "train_size", "dev_size", "test_size", "train_tokens", "vocab_size",
    "settings",
)


def training_summary(ckpt: dict[str, Any]) -> dict[str, Any]:
    """What the manifest tells of a checkpoint's training (profile, epochs, sizes, settings, time)."""
    training, metrics = ckpt.get("training", {}), ckpt.get("metrics", {})
    summary = {k: training[k] for k in _TRAINING_KEYS if k in training}
    if "train_seconds" in metrics:
        summary["train_seconds"] = metrics["train_seconds"]
    return summary


def build_manifest(ckpt: dict[str, Any], version: int, parameters: int, exporter: str) -> Manifest:
    task, cfg = ckpt["task"], ckpt["config"]
    if ckpt["vocab"][PAD_ID] != PAD or ckpt["vocab"][UNK_ID] != UNK:
        raise ExportError("checkpoint vocabulary does not start with <pad>, <unk>")
    metrics = ckpt.get("metrics", {})
    quality = {k: metrics[k] for k in ("test_accuracy", "dev_accuracy", "test_size", "dev_size") if k in metrics}
    training_info = training_summary(ckpt)
    inputs, outputs = sentiment_specs(len(ckpt["labels"]))
    return Manifest(
        task=task,
        arch=cfg["arch"],
        version=version,
        labels=list(ckpt["labels"]),
        inputs=inputs,
        outputs=outputs,
        files={"model": MODEL_FILE, "vocab": VOCAB_FILE},
        tokenizer={"name": TOKENIZER_NAME, "lowercase": True},
        special_tokens={"pad": PAD_ID, "unk": UNK_ID},
        quality=quality,
        training=training_info,
        model_config=dict(cfg),
        parameters=parameters,
        exported_with={**_package_versions(), "exporter": exporter},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


# ----------------------------------------------------------------------------- graph helpers (every task)


def torch_inputs(feeds: dict[str, np.ndarray]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(v) for v in feeds.values())


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The exporters narrate (deprecation notices, dynamo's progress prints); keep commands readable."""
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        onnx_log.setLevel(level)


def export_graph(
    module: nn.Module,
    example: dict[str, np.ndarray],
    outputs: list[str],
    dynamic: dict[str, dict[int, str]],
    exporter: str,
    path: Path,
) -> None:
    """Export ``module`` called on ``example`` (ONNX input name -> array, in the forward's order)."""
    args = torch_inputs(example)
    with quiet():
        if exporter == "dynamo":
            dims = {d: torch.export.Dim(d) for axes in dynamic.values() for d in axes.values()}
            program = torch.onnx.export(
                module,
                args,
                input_names=list(example),
                output_names=outputs,
                # positional: torch.export keys a dict by the forward's argument names, not the ONNX names
                dynamic_shapes=_positional_shapes(module, [{ax: dims[d] for ax, d in dynamic.get(n, {}).items()}
                                                           for n in example]),
                opset_version=OPSET,
                dynamo=True,
                verbose=False,
            )
            program.save(str(path))
        else:
            torch.onnx.export(
                module,
                args,
                str(path),
                input_names=list(example),
                output_names=outputs,
                dynamic_axes=dynamic,
                opset_version=OPSET,
                dynamo=False,
            )


def _positional_shapes(module: nn.Module, shapes: list[dict[int, Any]]) -> list[Any]:
    """One entry per forward argument: a ``*rest`` argument takes the remaining inputs as one list."""
    params = list(inspect.signature(module.forward).parameters.values())
    fixed = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return [*shapes[: len(fixed)], tuple(shapes[len(fixed) :])]
    return shapes


def name_io_dims(path: Path, specs: list[TensorSpec]) -> None:
    """Stamp the specs' dims on the graph's inputs and outputs (exporters differ in naming them)."""
    proto = onnx.load(str(path))
    wanted = {s.name: s.shape for s in specs}
    values = [*proto.graph.input, *proto.graph.output]
    if sorted(v.name for v in values) != sorted(wanted):
        raise ExportError(f"{path.name}: graph has {[v.name for v in values]}, expected {sorted(wanted)}")
    for value in values:
        dims = wanted[value.name]
        shape = value.type.tensor_type.shape
        if len(shape.dim) != len(dims):
            raise ExportError(f"{path.name}: {value.name} has rank {len(shape.dim)}, expected {len(dims)}")
        for dim, want in zip(shape.dim, dims):
            if isinstance(want, str):
                dim.dim_param = want  # also clears an example-sized dim_value
            else:
                dim.dim_value = want
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))


def sessions(path: Path) -> list[ort.InferenceSession]:
    """A plain session and one configured like the service (1 intra-op thread, basic optimizations)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return [
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]),
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]),
    ]


def compare(what: str, got: list[np.ndarray], expected: list[np.ndarray], atol: float) -> float:
    worst = 0.0
    for g, e in zip(got, expected):
        if g.shape != e.shape or g.dtype != np.float32:
            raise ExportError(f"{what}: ONNX output {g.dtype}{g.shape}, expected float32{e.shape}")
        diff = float(np.abs(g - e).max()) if g.size else 0.0
        if not diff < atol:  # also catches NaN
            raise ExportError(
                f"{what}: ONNX Runtime differs from PyTorch by {diff:.3g} (> {atol}); refusing to publish"
            )
        worst = max(worst, diff)
    return worst


def run_session(
    session: ort.InferenceSession, feeds: dict[str, np.ndarray], outputs: list[str], what: str
) -> list[np.ndarray]:
    try:
        return session.run(outputs, feeds)
    except Exception as exc:  # e.g. a length frozen into a Reshape
        raise ExportError(f"{what}: ONNX Runtime failed: {exc}") from exc




def median_ms(session: ort.InferenceSession, feeds: dict[str, np.ndarray], repeat: int = 30) -> float:
    session.run(None, feeds)  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 4)



def export_checkpoint(checkpoint_path: Path, repository: Path, version: int | None = None) -> Path:
    """Export one checkpoint as a new version in ``repository``; returns the version folder.

    ``version=None`` takes the next free integer. Raises FileExistsError if an
    explicit version exists, ExportError if ONNX Runtime disagrees with PyTorch.
    """
    model, ckpt = load_checkpoint(Path(checkpoint_path))
    cfg = ckpt["config"]
    task, arch = ckpt["task"], cfg["arch"]
    if task != "sentiment":  # the manifest below describes a (batch, n_labels) classifier
        raise ValueError(f"{checkpoint_path}: exporting {task!r} models is not supported yet")
    parameters = sum(p.numel() for p in model.parameters())

    def write_files(folder: Path) -> str:
        exporter = export_onnx(model, arch, cfg["vocab_size"], cfg["n_labels"], folder / MODEL_FILE)
        check_parity(model, folder / MODEL_FILE, cfg["vocab_size"])
        write_vocab(folder / VOCAB_FILE, list(ckpt["vocab"]))
        return exporter

    return publish_version(
        Path(repository) / task / arch,
        version,
        write_files,
        lambda v, exporter: build_manifest(ckpt, v, parameters, exporter),
    )


def publish_version(
    arch_dir: Path,
    version: int | None,
    write_files: Callable[[Path], str],
    manifest_for: Callable[[int, str], Manifest],
) -> Path:
    """Build a model version in a hidden folder, then rename it into place: a scanning
    server sees a version whole or not at all. ``write_files(folder)`` writes and checks
    the graphs and returns the exporter's name; ``manifest_for(version, exporter)``
    describes them. ``version=None`` takes the next free integer; an explicit one
    that exists raises FileExistsError."""
    arch_dir.mkdir(parents=True, exist_ok=True)
    if version is not None:
        if version < 1:
            raise ValueError("version must be a positive integer")
        if (arch_dir / str(version)).exists():
            raise FileExistsError(f"{arch_dir / str(version)} already exists")

    # Hidden and non-numeric: a server scanning for integer folders ignores it.
    tmp = arch_dir / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        exporter = write_files(tmp)
        while True:
            v = version if version is not None else next_version(arch_dir)
            manifest_for(v, exporter).write(tmp)
            final = arch_dir / str(v)
            if final.exists():  # another export took this number meanwhile
                if version is not None:
                    raise FileExistsError(f"{final} already exists")
                continue
            try:
                tmp.rename(final)  # atomic on one filesystem
            except OSError:
                if version is not None or not final.exists():
                    raise
                continue
            return final
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------- CLI


def export_parser(task: str, description: str) -> argparse.ArgumentParser:
    """The options every ``seqserve export --task <task>`` command takes."""
    p = argparse.ArgumentParser(
        prog="seqserve export" + ("" if task == "sentiment" else f" --task {task}"), description=description
    )
    p.add_argument("--task", choices=[task], default=task, help=argparse.SUPPRESS if task != "sentiment" else None)
    p.add_argument("--arch", nargs="+", default=["all"], choices=[*ARCHS, "all"])
    p.add_argument(
        "--runs",
        type=Path,
        default=None,
        help="training runs dir (default: $SEQSERVE_RUNS_DIR or ~/.cache/seqserve/runs)",
    )
    p.add_argument("--repository", type=Path, default=Path("models"), help="model repository root (default: ./models)")
    p.add_argument("--version", type=int, default=None, help="version number (default: next free integer per model)")
    return p


def build_parser() -> argparse.ArgumentParser:
    return export_parser(
        "sentiment",
        "Export trained checkpoints to ONNX, verify them against PyTorch, and add them to a model repository.",
    )


def export_runs(
    task: str,
    args: argparse.Namespace,
    export: Callable[[Path, Path, int | None], Path],
    summary: Callable[[Manifest], str],
) -> int:
    """The export command of every task: each chosen architecture's checkpoint under
    the runs dir becomes a new version; one line per version, errors on stderr."""
    runs = args.runs or paths.runs_dir()
    explicit = "all" not in args.arch
    status = exported = 0
    for arch in (a for a in ARCHS if not explicit or a in args.arch):
        ckpt = runs / task / arch / "checkpoint.pt"
        if not ckpt.is_file():
            if explicit:
                print(f"seqserve export: no checkpoint {ckpt}", file=sys.stderr)
                status = 1
            continue
        try:
            out = export(ckpt, args.repository, args.version)
        except (ExportError, FileExistsError, ValueError) as exc:
            print(f"seqserve export: {task}/{arch}: {exc}", file=sys.stderr)
            status = 1
            continue
        m = Manifest.load(out)
        print(f"{task}/{arch} v{m.version} -> {out}  ({m.exported_with.get('exporter')}; {summary(m)})")
        exported += 1
    if exported == 0 and status == 0:
        print(f"seqserve export: no checkpoints under {runs / task}", file=sys.stderr)
        status = 1
    return status


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return export_runs(
        args.task, args, export_checkpoint, lambda m: f"test acc {m.quality.get('test_accuracy', float('nan')):.4f}"
    )


if __name__ == "__main__":
    sys.exit(main())
