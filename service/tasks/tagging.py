"""Part-of-speech tagging: whole sentences, and streams tagged token by token.

A causal model (RNN, LSTM, GRU) carries its recurrent state between a
stream's messages through its step graph, so every token is tagged the moment
it is complete. A bidirectional or attention model needs the future: a token
is tagged once ``lookahead`` more tokens have arrived (or at a flush / the end
of the stream), by re-encoding a bounded window of the stream with the full
graph.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from seqserve.features import FEATURES_NAME, token_features
from seqserve.manifest import read_vocab
from seqserve.text import tokenize
from service.batcher import Batcher
from service.errors import InferenceError, InvalidArgument, ResourceExhausted, SeqserveError, Status
from service.metrics import Metrics
from service.repository import ModelEntry
from service.runtime import Runtime
from service.settings import Settings
from service.tasks.base import ModelStore, model_batcher, warm_up_text

TASK = "tagging"
_FEATURE_CACHE_WORDS = 16_384  # distinct words kept per model: a few MB at most


class StreamIdle(SeqserveError):
    status = Status.DEADLINE_EXCEEDED


@dataclass(slots=True)  # not frozen: a frozen dataclass costs 3x as much to build, 20 a sentence
class Tagged:
    index: int  # position in the sentence (Tag) or in the stream (TagStream)
    token: str
    tag: str
    probability: float


@dataclass(frozen=True)
class Encoded:
    """A sentence ready for the graphs: ids (B=1 rows) and per-token features."""

    words: list[str]
    ids: list[int]
    features: list[tuple[int, ...]]


State = dict[str, np.ndarray]


@dataclass(frozen=True)
class StepItem:
    """One stream's next chunk and its state before it (state tensors (layers, 1, hidden))."""

    chunk: Encoded
    state: State


class TaggingModel:
    """One tagging model version: full-sentence graph (batched) and, if causal, a step graph."""

    def __init__(
        self, entry: ModelEntry, runtime: Runtime, settings: Settings, metrics: Metrics, executor: Executor
    ) -> None:
        assert entry.manifest is not None
        self.entry = entry
        self.manifest = entry.manifest
        self._runtime, self._settings, self._metrics, self._executor = runtime, settings, metrics, executor
        self._name = f"{TASK}/{entry.arch}/{entry.version}"
        self._batcher: Batcher[Encoded, list[tuple[str, float]]] | None = None
        self.step_session = None
        self._step_batcher: Batcher[StepItem, tuple[list[tuple[str, float]], State]] | None = None
        self.streams = 0  # open streams on this version (the store waits for them before closing it)

    # -- loading

    def load(self) -> None:
        m, s, folder = self.manifest, self._settings, self.entry.path
        if m.features.get("name") != FEATURES_NAME:
            raise ValueError(f"{folder}: features {m.features.get('name')!r} unsupported (have {FEATURES_NAME!r})")
        buckets = int(m.features["buckets"])
        # Running text repeats its words (Zipf): a bounded cache answers most of them, and
        # computing them was the largest part of tagging a sentence (38% under cProfile).
        self._features = functools.lru_cache(maxsize=_FEATURE_CACHE_WORDS)(
            lambda word: tuple(token_features(word, buckets))
        )
        self._ids = {t: i for i, t in enumerate(read_vocab(folder / m.files["vocab"]))}
        self._unk, self._pad = m.special_tokens["unk"], m.special_tokens["pad"]
        self.mode = m.streaming.get("mode", "lookahead")
        self.lookahead = int(m.streaming.get("lookahead", 0))
        if self.mode == "causal":
            self.state_specs = [(st["name"], list(st["shape"])) for st in m.streaming["state"]]
            self.step_session = self._runtime.session(folder / m.files["step"])
            # No hold: a stream's client waits for each word's tag, and its steps already
            # batch across streams while the previous step runs.
            self._step_batcher = model_batcher(
                self._run_steps, self.entry, s, self._metrics, self._executor, admission=False, hold=False
            )
        elif self.lookahead >= s.lookahead_window:
            raise ValueError(f"{folder}: lookahead {self.lookahead} needs SEQSERVE_LOOKAHEAD_WINDOW above it")
        self._session = self._runtime.session(folder / m.files["model"])
        self._batcher = model_batcher(self._run_full, self.entry, s, self._metrics, self._executor)
        self._batcher.warm_up([self.encode(warm_up_text(s).split())] * s.max_batch_size)

    @property
    def ready(self) -> bool:
        return self._batcher is not None

    @property
    def busy(self) -> int:
        return self.streams + (self._batcher.in_flight if self._batcher else 0)

    async def close(self) -> None:
        for batcher in (self._batcher, self._step_batcher):
            if batcher is not None:
                await batcher.close()

    # -- encoding and running

    def encode(self, words: list[str]) -> Encoded:
        ids = [self._ids.get(w.lower(), self._unk) for w in words]
        return Encoded(words, ids, [self._features(w) for w in words])

    def _decode(self, logits: np.ndarray) -> list[list[tuple[str, float]]]:
        """Every row's best tag and its probability, worked out for the whole batch at once:
        per-row numpy calls cost more than the arithmetic at these sizes."""
        best = logits.argmax(axis=-1)  # (B, T)
        # The best tag's probability is exp(0) over the sum once the maximum is subtracted.
        shifted = logits - logits.max(axis=-1, keepdims=True)  # (B, T, n_tags)
        top = 1.0 / np.exp(shifted).sum(axis=-1)  # (B, T)
        labels = self.manifest.labels
        return [[(labels[b], p) for b, p in zip(bs, ps)] for bs, ps in zip(best.tolist(), top.tolist())]

    def _run_full(self, rows: list[Encoded]) -> list[list[tuple[str, float]]]:
        """One batched ORT run of the full graph; in a worker thread."""
        lengths = np.array([len(r.ids) for r in rows], dtype=np.int64)  # (B,)
        T, F = int(lengths.max()), len(rows[0].features[0])
        tokens = np.full((len(rows), T), self._pad, dtype=np.int64)  # (B, T)
        feats = np.zeros((len(rows), T, F), dtype=np.int64)  # (B, T, F); 0 is the padding feature
        for i, r in enumerate(rows):
            tokens[i, : len(r.ids)] = r.ids
            feats[i, : len(r.ids)] = r.features
        try:
            (logits,) = self._session.run(
                ["logits"], {"tokens": tokens, "features": feats, "lengths": lengths}
            )  # (B, T, n_tags)
        except Exception as exc:
            raise InferenceError(f"{self._name}: inference failed: {exc}") from exc
        return [tags[:n] for tags, n in zip(self._decode(logits), lengths.tolist())]

    async def tag(self, sentences: list[Encoded], admit: bool = True) -> list[list[tuple[str, float]]]:
        """Whole sentences through the batcher; ``admit=False`` for a stream's re-encodes
        (the stream was admitted when it opened)."""
        assert self._batcher is not None, "load() first"
        return await self._batcher.submit_many(sentences, admit=admit)

    def initial_state(self) -> dict[str, np.ndarray]:
        # Manifest shapes are [layers, hidden]; the graph wants [layers, batch=1, hidden].
        return {name: np.zeros((shape[0], 1, shape[1]), dtype=np.float32) for name, shape in self.state_specs}

    async def step(self, chunk: Encoded, state: dict[str, np.ndarray]) -> tuple[list[tuple[str, float]], State]:
        """Advance one stream by a chunk of k tokens; streams stepping at once share ORT runs."""
        assert self._step_batcher is not None, "load() first"
        return await self._step_batcher.submit(StepItem(chunk, state), admit=False)

    def _run_steps(self, items: list[StepItem]) -> list[tuple[list[tuple[str, float]], State]]:
        """One step-graph run per chunk length in the batch, each stream's state a row; in a worker thread."""
        out: list[tuple[list[tuple[str, float]], State]] = [([], {})] * len(items)
        by_length: dict[int, list[int]] = {}
        for i, item in enumerate(items):
            by_length.setdefault(len(item.chunk.ids), []).append(i)
        names = [name for name, _ in self.state_specs]
        for rows in by_length.values():
            inputs = {
                "tokens": np.array([items[i].chunk.ids for i in rows], dtype=np.int64),  # (B, k)
                "features": np.array([items[i].chunk.features for i in rows], dtype=np.int64),  # (B, k, F)
                **{n: np.concatenate([items[i].state[n] for i in rows], axis=1) for n in names},  # (L, B, H)
            }
            try:
                logits, *states = self.step_session.run(["logits", *(f"{n}_out" for n in names)], inputs)
            except Exception as exc:
                raise InferenceError(f"{self._name}: step failed: {exc}") from exc
            for j, (i, tags) in enumerate(zip(rows, self._decode(logits))):  # logits (B, k, n_tags); states (L, B, H)
                out[i] = (tags, {n: s[:, j : j + 1].copy() for n, s in zip(names, states)})
        return out


# -- streams ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SelectModel:
    arch: str = ""
    version: int = 0


@dataclass(frozen=True)
class TokensIn:
    tokens: list[str]


@dataclass(frozen=True)
class TextIn:
    text: str


@dataclass(frozen=True)
class FlushIn:
    pass


StreamEvent = SelectModel | TokensIn | TextIn | FlushIn


@dataclass(frozen=True)
class StreamStarted:
    entry: ModelEntry
    mode: str  # "causal" or "lookahead"
    lookahead: int


class TextSplitter:
    """Raw text cut anywhere -> complete words.

    A word is complete once white space follows it: until then the next chunk
    may still extend it ("jur" + "y"), even after punctuation ("film'" + "s").
    """

    def __init__(self, max_chars: int) -> None:
        self._tail = ""
        self._max = max_chars

    def feed(self, chunk: str) -> list[str]:
        text = self._tail + chunk
        cut = max(text.rfind(c) for c in " \t\n\r\f\v")
        if cut < 0:
            if len(text) > self._max:
                raise InvalidArgument(f"a word of over {self._max} characters without white space")
            self._tail = text
            return []
        self._tail = text[cut + 1 :]
        return tokenize(text[: cut + 1], lowercase=False)

    def flush(self) -> list[str]:
        words, self._tail = tokenize(self._tail, lowercase=False), ""
        return words


class _Window:
    """A lookahead stream's recent tokens: enough to re-encode, never the whole stream."""

    def __init__(self) -> None:
        self.offset = 0  # stream index of words[0]
        self.words: list[str] = []
        self.arrived: list[float] = []

    def drop_before(self, index: int) -> None:
        n = index - self.offset
        if n > 0:
            del self.words[:n], self.arrived[:n]
            self.offset = index


class TagStream:
    """The server side of one TagStream: its state lives exactly as long as this object."""

    def __init__(self, model: TaggingModel, settings: Settings, metrics: Metrics) -> None:
        self.model = model
        self._settings = settings
        self._latency = metrics.token_latency.labels(TASK, model.entry.arch)
        self._tagged = metrics.tokens_tagged.labels(TASK, model.entry.arch)
        self._splitter = TextSplitter(settings.max_text_chars)
        self._received = 0  # tokens received so far
        self._emitted = 0  # tokens tagged so far
        self._state = model.initial_state() if model.mode == "causal" else {}
        self._window = _Window()

    async def push(self, words: list[str], arrived: float, final: bool = False) -> list[Tagged]:
        if self._received + len(words) > self._settings.max_stream_tokens:
            raise ResourceExhausted(
                f"stream passed {self._settings.max_stream_tokens} tokens; open a new stream"
            )
        if any(not w or w.isspace() for w in words):
            raise InvalidArgument("tokens must be non-empty words")
        self._received += len(words)
        if self.model.mode == "causal":
            if not words:
                return []
            tags, self._state = await self.model.step(self.model.encode(words), self._state)
            return self._emit(words, tags, [arrived] * len(words))
        self._window.words += words
        self._window.arrived += [arrived] * len(words)
        return await self._emit_lookahead(final)

    async def push_tokens(self, tokens: list[str], arrived: float) -> list[Tagged]:
        # Whole tokens end any word the text before them left open ("said" + ["it"]).
        return await self.push(self._splitter.flush() + tokens, arrived)

    async def push_text(self, chunk: str, arrived: float) -> list[Tagged]:
        return await self.push(self._splitter.feed(chunk), arrived)

    async def flush(self, arrived: float) -> list[Tagged]:
        return await self.push(self._splitter.flush(), arrived, final=True)

    async def _emit_lookahead(self, final: bool) -> list[Tagged]:
        w, width, k = self._window, self._settings.lookahead_window, self.model.lookahead
        target = self._received if final else self._received - k
        out: list[Tagged] = []
        while self._emitted < target:
            # A pass re-encodes at most `width` tokens, ending at most half a window
            # (or k + 1) past the first untagged one: the tokens it tags keep at least
            # half a window of the past, however much arrived at once.
            end = min(self._received, self._emitted + max(k + 1, width // 2))
            start = max(w.offset, end - width)
            sentence = self.model.encode(w.words[start - w.offset : end - w.offset])
            (tags,) = await self.model.tag([sentence], admit=False)
            stop = min(target, end if final else end - k)
            first = self._emitted - start
            out += self._emit(
                w.words[self._emitted - w.offset : stop - w.offset],
                tags[first : first + stop - self._emitted],
                w.arrived[self._emitted - w.offset : stop - w.offset],
            )
        w.drop_before(max(0, self._emitted - width))
        return out

    def _emit(self, words: list[str], tags: list[tuple[str, float]], arrived: list[float]) -> list[Tagged]:
        now = time.perf_counter()
        out = []
        for word, (tag, p), t in zip(words, tags, arrived):
            out.append(Tagged(self._emitted, word, tag, p))
            self._latency.observe(now - t)
            self._emitted += 1
        self._tagged.inc(len(out))
        return out


class TaggingTask:
    """Validation, model choice and stream bookkeeping for tagging."""

    def __init__(self, store: ModelStore, settings: Settings, metrics: Metrics) -> None:
        self._store = store
        self._settings = settings
        self._metrics = metrics
        self._open = 0

    def model(self, arch: str = "", version: int = 0) -> TaggingModel:
        model = self._store.get(TASK, arch, version)
        assert isinstance(model, TaggingModel)
        return model

    async def tag(
        self, model: TaggingModel, sentences: list[str | list[str]]
    ) -> list[list[Tagged]]:
        s = self._settings
        if not sentences:
            raise InvalidArgument("sentences is empty: send at least one")
        if len(sentences) > s.max_batch_texts:
            raise InvalidArgument(f"{len(sentences)} sentences in one request; the limit is {s.max_batch_texts}")
        encoded = [model.encode(self._words(x, i)) for i, x in enumerate(sentences)]
        tagged = await model.tag(encoded)
        return [
            [Tagged(i, w, tag, p) for i, (w, (tag, p)) in enumerate(zip(e.words, tags))]
            for e, tags in zip(encoded, tagged)
        ]

    def _words(self, sentence: str | list[str], i: int) -> list[str]:
        s = self._settings
        if isinstance(sentence, str):
            if len(sentence) > s.max_text_chars:
                raise InvalidArgument(f"sentences[{i}] has {len(sentence)} characters; the limit is {s.max_text_chars}")
            words = tokenize(sentence, lowercase=False)
        else:
            words = sentence
            if any(not w or w.isspace() for w in words):
                raise InvalidArgument(f"sentences[{i}] has an empty token")
        if not words:
            raise InvalidArgument(f"sentences[{i}] is empty: send at least one word")
        if len(words) > s.max_tokens:
            raise InvalidArgument(f"sentences[{i}] has {len(words)} tokens; the limit is {s.max_tokens}")
        return words

    async def stream(self, events: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamStarted | list[Tagged]]:
        """Run one stream: first a StreamStarted, then the tags as they are decided."""
        it = aiter(events)
        first = await self._next(it)
        select = first if isinstance(first, SelectModel) else SelectModel()
        model = self.model(select.arch, select.version)
        if self._open >= self._settings.max_streams:
            self._metrics.streams_ended.labels(TASK, model.entry.arch, "refused").inc()
            raise ResourceExhausted(f"{self._open} tagging streams are open, the limit; retry later")
        self._open += 1
        model.streams += 1
        active = self._metrics.active_streams.labels(TASK, model.entry.arch)
        active.inc()
        reason = "error"
        try:
            stream = TagStream(model, self._settings, self._metrics)
            yield StreamStarted(model.entry, model.mode, model.lookahead)
            event = None if first is select else first
            while True:
                if event is None:
                    event = await self._next(it)
                if event is None:  # the client closed its side: tag what is left
                    yield await stream.flush(time.perf_counter())
                    reason = "completed"
                    return
                tags = await self._apply(stream, event)
                if tags:
                    yield tags
                event = None
        except (asyncio.CancelledError, GeneratorExit):
            reason = "cancelled"
            raise
        except StreamIdle:
            reason = "idle_timeout"
            raise
        finally:
            self._open -= 1
            model.streams -= 1
            active.dec()
            self._metrics.streams_ended.labels(TASK, model.entry.arch, reason).inc()

    async def _apply(self, stream: TagStream, event: StreamEvent) -> list[Tagged]:
        arrived = time.perf_counter()
        if isinstance(event, TokensIn):
            return await stream.push_tokens(event.tokens, arrived)
        if isinstance(event, TextIn):
            return await stream.push_text(event.text, arrived)
        if isinstance(event, FlushIn):
            return await stream.flush(arrived)
        raise InvalidArgument("the model can only be chosen in a stream's first message")

    async def _next(self, it: AsyncIterator[StreamEvent]) -> StreamEvent | None:
        timeout = self._settings.stream_idle_timeout_s
        try:
            # timeout(), not wait_for(): no task per message, which a stream pays on every word.
            async with asyncio.timeout(timeout):
                return await anext(it)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise StreamIdle(f"no message for {timeout:g} s: the stream was closed and its state freed") from None
