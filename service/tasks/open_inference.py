"""The Open Inference Protocol (KServe v2) over the served models, without gRPC.

Model names: ``<task>-<arch>`` (``sentiment-lstm``), and ``<task>`` for the
task's default architecture. Versions are the repository's version numbers as
strings; an empty version is the newest. Tensors are numpy arrays under the
protocol's data type names; the gRPC layer only converts them to and from the
wire. Inference goes through the task's own path (its batcher, limits and
metrics), so a tensor request is served exactly like a typed one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

import seqserve
from seqserve.manifest import Manifest, TensorSpec
from service.errors import InvalidArgument, NotFound, Unavailable
from service.tasks.base import ModelStore, ServedModel, ServingState
from service.tasks.sentiment import Prediction, SentimentModel, SentimentTask

SERVER_NAME = "seqserve"
# Triton's name for ONNX Runtime models; clients that switch on the platform know it.
PLATFORM = "onnxruntime_onnx"

# Protocol data type -> numpy dtype (little-endian, as raw tensor contents are).
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("?"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),  # elements are Python bytes
}
_DATATYPE_OF_NUMPY = {dtype.name: name for name, dtype in DATATYPES.items() if name != "BYTES"}


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str  # a key of DATATYPES
    data: np.ndarray  # shaped as the tensor; dtype DATATYPES[datatype]

    @property
    def shape(self) -> list[int]:
        return list(self.data.shape)


@dataclass(frozen=True)
class TensorMetadata:
    name: str
    datatype: str
    shape: list[int]  # -1: any size


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


@dataclass(frozen=True)
class InferResult:
    model_name: str
    model_version: str
    outputs: list[Tensor]


def datatype_of(spec: TensorSpec) -> str:
    """The protocol's name for a manifest dtype ("int64" -> "INT64")."""
    return _DATATYPE_OF_NUMPY[np.dtype(spec.dtype).name]


def metadata_of(spec: TensorSpec) -> TensorMetadata:
    """A manifest tensor as the protocol shows it: symbolic dimensions become -1."""
    return TensorMetadata(spec.name, datatype_of(spec), [d if isinstance(d, int) else -1 for d in spec.shape])


def _shape_text(spec: TensorSpec) -> str:
    return "[" + ", ".join(str(d) for d in spec.shape) + "]"


def check_input(spec: TensorSpec, tensor: Tensor, sizes: dict[str, int]) -> None:
    """``tensor`` against the manifest's ``spec``: data type, rank, fixed sizes, and
    symbolic sizes (``batch``) equal across the inputs that share them."""
    want = datatype_of(spec)
    if tensor.datatype != want:
        raise InvalidArgument(f"input {tensor.name!r} is {tensor.datatype}; the model takes {want}")
    if len(tensor.shape) != len(spec.shape):
        raise InvalidArgument(
            f"input {tensor.name!r} has shape {tensor.shape}; the model takes {_shape_text(spec)}"
        )
    for dim, size in zip(spec.shape, tensor.shape):
        if isinstance(dim, int) and size != dim:
            raise InvalidArgument(
                f"input {tensor.name!r} has shape {tensor.shape}; the model takes {_shape_text(spec)}"
            )
        if isinstance(dim, str) and sizes.setdefault(dim, size) != size:
            raise InvalidArgument(
                f"input {tensor.name!r} has {dim} {size}, another input has {dim} {sizes[dim]}"
            )


class TaskTensors(Protocol):
    """One task's tensors: what its models take and give, and running them."""

    def inputs(self, manifest: Manifest) -> list[TensorMetadata]: ...

    def outputs(self, manifest: Manifest) -> list[TensorMetadata]: ...

    async def infer(self, model: ServedModel, inputs: dict[str, Tensor]) -> dict[str, Tensor]: ...


class SentimentTensors:
    """Sentiment as tensors. In: the model's own ``tokens`` INT64 [batch, length]
    and ``lengths`` INT64 [batch], or, for clients that do not tokenize, ``text``
    BYTES [batch] (UTF-8). Out: ``logits`` and ``probabilities`` FP32 [batch,
    labels] in the manifest's label order, and ``label`` BYTES [batch]."""

    TEXT = "text"

    def __init__(self, task: SentimentTask) -> None:
        self._task = task

    def inputs(self, manifest: Manifest) -> list[TensorMetadata]:
        return [metadata_of(spec) for spec in manifest.inputs]

    def outputs(self, manifest: Manifest) -> list[TensorMetadata]:
        n_labels = len(manifest.labels)
        return [
            TensorMetadata("logits", "FP32", [-1, n_labels]),
            TensorMetadata("probabilities", "FP32", [-1, n_labels]),
            TensorMetadata("label", "BYTES", [-1]),
        ]

    async def infer(self, model: ServedModel, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        assert isinstance(model, SentimentModel) and model.entry.manifest is not None
        manifest = model.entry.manifest
        model_inputs = {spec.name for spec in manifest.inputs}
        if set(inputs) == {self.TEXT}:
            predictions = await self._task.classify(model, self._texts(inputs[self.TEXT]))
        elif set(inputs) == model_inputs:
            predictions = await self._task.classify_ids(model, self._rows(manifest, inputs))
        else:
            raise InvalidArgument(
                f"inputs {sorted(inputs)}: send either {' and '.join(sorted(model_inputs))} (the model's "
                f"own tensors) or {self.TEXT} (BYTES [batch], UTF-8)"
            )
        return self._outputs(predictions)

    @staticmethod
    def _texts(tensor: Tensor) -> list[str]:
        if tensor.datatype != "BYTES" or len(tensor.shape) != 1:
            raise InvalidArgument(
                f"input 'text' is {tensor.datatype} {tensor.shape}; it takes BYTES [batch], one UTF-8 text each"
            )
        try:
            return [bytes(b).decode("utf-8") for b in tensor.data]
        except UnicodeDecodeError as exc:
            raise InvalidArgument(f"input 'text' is not valid UTF-8: {exc}") from exc

    @staticmethod
    def _rows(manifest: Manifest, inputs: dict[str, Tensor]) -> list[list[int]]:
        """Unpadded id rows: each tokens row cut at its length."""
        sizes: dict[str, int] = {}
        for spec in manifest.inputs:
            check_input(spec, inputs[spec.name], sizes)
        tokens, lengths = inputs["tokens"].data, inputs["lengths"].data  # (B, T), (B,)
        width = tokens.shape[1]
        for i, n in enumerate(lengths.tolist()):
            if not 1 <= n <= width:
                raise InvalidArgument(f"lengths[{i}] is {n}; it must be between 1 and the tokens' length {width}")
        return [tokens[i, :n].tolist() for i, n in enumerate(lengths.tolist())]

    @staticmethod
    def _outputs(predictions: list[Prediction]) -> dict[str, Tensor]:
        logits = np.array([p.logits for p in predictions], dtype=np.float32)  # (B, L)
        probabilities = np.array([[x for _, x in p.probabilities] for p in predictions], dtype=np.float32)
        labels = np.array([p.label.encode() for p in predictions], dtype=object)  # (B,)
        return {
            "logits": Tensor("logits", "FP32", logits),
            "probabilities": Tensor("probabilities", "FP32", probabilities),
            "label": Tensor("label", "BYTES", labels),
        }


class OpenInference:
    """Names, readiness, metadata and inference of every served model, as the protocol sees them."""

    def __init__(self, store: ModelStore, state: ServingState, tasks: dict[str, TaskTensors]) -> None:
        self._store = store
        self._state = state
        self._tasks = tasks

    def server_ready(self) -> bool:
        return self._state.serving

    @staticmethod
    def server_metadata() -> tuple[str, str, list[str]]:
        """Name, version and protocol extensions (none: no repository or sequence calls)."""
        return SERVER_NAME, seqserve.__version__, []

    def model(self, name: str, version: str = "") -> ServedModel:
        """The model a request names; NotFound names what exists."""
        task, arch = self._lookup(name)
        versions = self._store.versions(task, arch)
        if not version:
            return self._store.get(task, arch, versions[-1])
        if not version.isdigit() or int(version) not in versions:
            raise NotFound(f"model {name!r} has no version {version!r}; versions: {', '.join(map(str, versions))}")
        return self._store.get(task, arch, int(version))

    def model_ready(self, name: str, version: str = "") -> bool:
        """Ready while the server serves and the model is loaded. A probe wants a
        yes or no, so a model the repository has but could not load (or nothing
        loaded yet) is false; only a name the repository never had is NotFound."""
        try:
            return self._state.serving and self.model(name, version).ready
        except Unavailable:
            return False
        except NotFound:
            if self._in_repository(name, version):
                return False
            raise

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        model = self.model(name, version)
        entry, manifest = model.entry, model.entry.manifest
        assert manifest is not None
        tensors = self._tasks[entry.task]
        return ModelMetadata(
            name=canonical_name(model),
            versions=[str(v) for v in self._store.versions(entry.task, entry.arch)],
            platform=PLATFORM,
            inputs=tensors.inputs(manifest),
            outputs=tensors.outputs(manifest),
        )

    async def infer(self, model: ServedModel, inputs: Sequence[Tensor], requested: Sequence[str]) -> InferResult:
        """Run ``model`` on ``inputs``; return the ``requested`` outputs in that order (all when none)."""
        by_name: dict[str, Tensor] = {}
        for tensor in inputs:
            if tensor.name in by_name:
                raise InvalidArgument(f"input {tensor.name!r} is given twice")
            by_name[tensor.name] = tensor
        tensors = self._tasks[model.entry.task]
        assert model.entry.manifest is not None
        offered = [t.name for t in tensors.outputs(model.entry.manifest)]
        unknown = [name for name in requested if name not in offered]
        if unknown:  # before the model runs, not after
            raise InvalidArgument(f"no output named {unknown[0]!r}; outputs: {', '.join(offered)}")
        outputs = await tensors.infer(model, by_name)
        chosen = [outputs[name] for name in requested or offered]
        return InferResult(canonical_name(model), str(model.entry.version), chosen)

    def _loaded_names(self) -> dict[str, tuple[str, str]]:
        """Every name a request may use -> (task, arch): ``<task>`` and ``<task>-<arch>``
        for each architecture with a loaded version, of the tasks with a tensor mapping."""
        names: dict[str, tuple[str, str]] = {}
        for task in (t for t in self._store.tasks if t in self._tasks):
            default = self._store.default_arch(task)
            if default:
                names[task] = (task, default)
            for status in self._store.statuses(task):
                if status.ready:
                    names[f"{task}-{status.entry.arch}"] = (task, status.entry.arch)
        return names

    def _in_repository(self, name: str, version: str) -> bool:
        return any(
            name in (s.entry.task, f"{s.entry.task}-{s.entry.arch}") and version in ("", str(s.entry.version))
            for s in self._store.statuses()
            if s.entry.task in self._tasks
        )

    def _lookup(self, name: str) -> tuple[str, str]:
        names = self._loaded_names()
        if not names:
            raise Unavailable("no model is loaded")
        if name not in names:
            raise NotFound(f"model {name!r} is not served; models: {', '.join(sorted(names))}")
        return names[name]


def canonical_name(model: ServedModel) -> str:
    """The one name of a model version's architecture: ``sentiment-lstm``."""
    return f"{model.entry.task}-{model.entry.arch}"
