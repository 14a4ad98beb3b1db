"""Sentiment: a sentence in, a label and the probability of every label out."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from service.batcher import Batcher
from service.errors import InferenceError, InvalidArgument
from service.metrics import Metrics
from service.repository import ModelEntry
from service.runtime import Runtime
from service.settings import Settings
from service.tasks.base import ModelStore, model_batcher, warm_up_text
from service.tasks.text_input import Encoder

TASK = "sentiment"


@dataclass(frozen=True)
class Prediction:
    label: str
    probabilities: list[tuple[str, float]]  # every label, in the model's order
    logits: tuple[float, ...] = ()  # the model's raw output, same order (the tensor protocol returns it)


def pad(rows: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad id lists into (B, T) tokens and (B,) lengths; the models ignore padding."""
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    tokens = np.full((len(rows), int(lengths.max())), pad_id, dtype=np.int64)  # (B, T)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = row
    return tokens, lengths


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)  # (B, L), avoids overflow
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


class SentimentModel:
    """One sentiment model version: an ORT session behind a dynamic batcher."""

    def __init__(
        self, entry: ModelEntry, runtime: Runtime, settings: Settings, metrics: Metrics, executor: Executor
    ) -> None:
        assert entry.manifest is not None
        self.entry = entry
        self._manifest = entry.manifest
        self._runtime = runtime
        self._settings = settings
        self._metrics = metrics
        self._executor = executor
        self._name = f"{TASK}/{entry.arch}/{entry.version}"
        self._session = None
        self._batcher: Batcher[list[int], Prediction] | None = None

    def load(self) -> None:
        m, s = self._manifest, self._settings
        self._encoder = Encoder(m, self.entry.path / m.files["vocab"], s.max_text_chars, s.max_tokens)
        self._session = self._runtime.session(self.entry.path / m.files["model"])
        names = [i.name for i in self._session.get_inputs()]
        if names != ["tokens", "lengths"]:
            raise ValueError(f"{self.entry.path / m.files['model']}: inputs {names}, expected tokens, lengths")
        self._batcher = model_batcher(self._run, self.entry, s, self._metrics, self._executor)
        self._batcher.warm_up([self._encoder.encode(warm_up_text(s))] * s.max_batch_size)

    @property
    def ready(self) -> bool:
        return self._batcher is not None

    @property
    def busy(self) -> int:
        return self._batcher.in_flight if self._batcher else 0

    async def classify(self, texts: list[str]) -> list[Prediction]:
        assert self._batcher is not None, "load() first"
        what = "text" if len(texts) == 1 else "texts[{}]"
        rows = [self._encoder.encode(t, what.format(i)) for i, t in enumerate(texts)]
        return await self._batcher.submit_many(rows)

    async def classify_ids(self, rows: list[list[int]]) -> list[Prediction]:
        """Rows a client tokenized itself (no padding), through the same batcher as text."""
        assert self._batcher is not None, "load() first"
        checked = [self._encoder.check_ids(row, f"tokens[{i}]") for i, row in enumerate(rows)]
        return await self._batcher.submit_many(checked)

    def _run(self, rows: list[list[int]]) -> list[Prediction]:
        """One ORT run over a batch; runs in a worker thread."""
        tokens, lengths = pad(rows, self._manifest.special_tokens["pad"])
        try:
            (logits,) = self._session.run(["logits"], {"tokens": tokens, "lengths": lengths})  # (B, L)
        except Exception as exc:
            raise InferenceError(f"{self._name}: inference failed: {exc}") from exc
        labels = self._manifest.labels
        probs = softmax(logits)  # (B, L)
        # Whole-batch numpy calls, then plain lists: per-row numpy calls cost more than the maths.
        return [
            Prediction(labels[best], list(zip(labels, p)), tuple(row))
            for best, p, row in zip(probs.argmax(axis=-1).tolist(), probs.tolist(), logits.tolist())
        ]

    async def close(self) -> None:
        if self._batcher is not None:
            await self._batcher.close()


class SentimentTask:
    """Request validation and model choice for sentiment."""

    def __init__(self, store: ModelStore, settings: Settings) -> None:
        self._store = store
        self._max_batch = settings.max_batch_texts

    def model(self, arch: str = "", version: int = 0) -> SentimentModel:
        """The model named by the request: NotFound names what exists."""
        model = self._store.get(TASK, arch, version)
        assert isinstance(model, SentimentModel)
        return model

    async def classify(self, model: SentimentModel, texts: list[str]) -> list[Prediction]:
        self._check_batch(len(texts), "texts")
        return await model.classify(texts)

    async def classify_ids(self, model: SentimentModel, rows: list[list[int]]) -> list[Prediction]:
        """Pre-tokenized rows (token ids without padding), with the same limits as text."""
        self._check_batch(len(rows), "rows")
        return await model.classify_ids(rows)

    def _check_batch(self, size: int, what: str) -> None:
        if not size:
            raise InvalidArgument(f"{what} is empty: send at least one {what.removesuffix('s')}")
        if size > self._max_batch:
            raise InvalidArgument(f"{size} {what} in one batch; the limit is {self._max_batch}")
