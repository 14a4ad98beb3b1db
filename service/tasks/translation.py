"""Translation: English text in, Spanish text out, whole or piece by piece as it is decoded.

Each model version runs its encoder and decoder-step graphs under a decode
scheduler (continuous batching, ``service.decode_scheduler``); the search
itself (greedy or beam) is ``seqserve.decoding``, the same code export checks
against PyTorch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from seqserve import decoding
from seqserve.decoding import BeamSearch, GreedySearch, Search, Translation
from seqserve.subword import SubwordModel
from service.decode_process import DecodeProcess, WorkerSpec, build_scheduler
from service.decode_scheduler import DecodeJob, DecodeScheduler
from service.errors import InvalidArgument
from service.metrics import DecodeMetrics, Metrics
from service.repository import ModelEntry
from service.runtime import Runtime
from service.settings import Settings
from service.tasks.base import ModelStore, admission_for, warm_up_text

TASK = "translation"
DECODE_ADMISSION_FLOOR = 4


@dataclass(frozen=True)
class Options:
    """What a request may choose; 0 means the default."""

    beam_size: int = 0
    max_length: int = 0
    n_best: int = 0


@dataclass(frozen=True)
class Candidate:
    text: str
    score: float
    log_prob: float
    length: int  # subword pieces, <eos> excluded
    truncated: bool  # the length limit cut it


@dataclass(frozen=True)
class Result:
    candidates: list[Candidate]  # best first
    source_length: int


@dataclass(frozen=True)
class Prepared:
    src: list[int]
    search: Search


class TranslationModel:
    """One translation model version: two ORT sessions behind a decode scheduler."""

    def __init__(self, entry: ModelEntry, runtime: Runtime, settings: Settings, metrics: Metrics) -> None:
        assert entry.manifest is not None
        self.entry = entry
        self.manifest = entry.manifest
        self._runtime, self._settings, self._metrics = runtime, settings, metrics
        self._scheduler: DecodeScheduler | DecodeProcess | None = None

    def load(self) -> None:
        m, s, folder = self.manifest, self._settings, self.entry.path
        contract = m.streaming
        if contract.get("mode") != "autoregressive":
            raise ValueError(f"{folder / 'manifest.json'}: streaming mode {contract.get('mode')!r}, "
                             "expected 'autoregressive'")
        self.source = SubwordModel.load(folder / m.files["source_subwords"])
        self.target = SubwordModel.load(folder / m.files["target_subwords"])
        self.bos_id, self.eos_id = int(contract["bos_id"]), int(contract["eos_id"])
        self.length_rule = (float(contract["max_len"]["a"]), int(contract["max_len"]["b"]))
        self.length_penalty = float(m.quality.get("length_penalty", 1.0))
        spec = WorkerSpec(
            encoder=folder / m.files["encoder"],
            decoder=folder / m.files["decoder"],
            contract=contract,
            settings=s,
            bos_id=self.bos_id,
            pad_id=int(m.special_tokens["pad"]),
            max_rows=s.max_decode_rows,
            max_queue=s.max_queue,
            max_encode_batch=s.max_batch_size,
            mode=s.decode_batching,
            name=f"{TASK}/{self.entry.arch}/{self.entry.version}",
            warm_up=self._warm_up_jobs(),
        )
        observer = DecodeMetrics(self._metrics, TASK, self.entry.arch)
        # The warm-up finishes DECODE_ADMISSION_FLOOR translations, so admission starts
        # from an estimate. The floor, also the limit whenever there is no estimate, is
        # small: a burst would otherwise all decode together, each several times slower.
        admission = admission_for(s, TASK, parallel=1, floor=DECODE_ADMISSION_FLOOR)
        if s.decode_process:
            self._scheduler = DecodeProcess(spec, observer=observer, admission=admission)
        else:
            self._scheduler = build_scheduler(spec, self._runtime, observer, admission)
            admission.record(*self._scheduler.warm_up(spec.warm_up))

    def _warm_up_jobs(self) -> list[tuple[list[int], Search]]:
        src = self.source.encode(warm_up_text(self._settings))
        beam = self._settings.default_beam_size
        return [(src, self.search(len(src), beam)) for _ in range(DECODE_ADMISSION_FLOOR)]  # searches hold state

    def search(self, source_length: int, beam: int, n_best: int = 1, max_length: int = 0) -> Search:
        """The search of one request: greedy for beam 1; the length limit from the source unless given."""
        a, b = self.length_rule
        limit = max_length or min(int(source_length * a + b), self._settings.max_output_tokens)
        if beam == 1:
            return GreedySearch(self.eos_id, limit)
        return BeamSearch(self.eos_id, limit, beam, n_best, self.length_penalty, early_stopping=True)

    @property
    def ready(self) -> bool:
        return self._scheduler is not None

    @property
    def busy(self) -> int:
        return self._scheduler.requests if self._scheduler else 0

    def submit(self, prepared: Prepared, deadline: float | None, progress: bool = True) -> DecodeJob:
        assert self._scheduler is not None, "load() first"
        return self._scheduler.submit(prepared.src, prepared.search, deadline, progress)

    def result(self, translation: Translation, source_length: int) -> Result:
        return Result(
            [
                Candidate(
                    self.target.decode(h.tokens),
                    h.score,
                    h.log_prob,
                    len(decoding.strip_eos(h.tokens, self.eos_id)),
                    not h.tokens or h.tokens[-1] != self.eos_id,
                )
                for h in translation.hypotheses
            ],
            source_length,
        )

    async def close(self) -> None:
        if self._scheduler is not None:
            await asyncio.to_thread(self._scheduler.close)


class TranslationTask:
    """Request validation, model choice, and the stream of pieces."""

    def __init__(self, store: ModelStore, settings: Settings) -> None:
        self._store = store
        self._settings = settings

    def model(self, arch: str = "", version: int = 0) -> TranslationModel:
        model = self._store.get(TASK, arch, version)
        assert isinstance(model, TranslationModel)
        return model

    def prepare(self, model: TranslationModel, text: str, options: Options) -> Prepared:
        """Check a request and turn it into source ids and a search; InvalidArgument says what is wrong."""
        s = self._settings
        if not text.strip():
            raise InvalidArgument("text is empty: send a sentence to translate")
        if len(text) > s.max_text_chars:
            raise InvalidArgument(f"text is {len(text)} characters; the limit is {s.max_text_chars}")
        src = model.source.encode(text)
        if len(src) > s.max_tokens:
            raise InvalidArgument(
                f"text is {len(src)} subword pieces; the limit is {s.max_tokens} (split it into sentences)"
            )
        beam = options.beam_size or s.default_beam_size
        if beam > s.max_beam_size:
            raise InvalidArgument(f"beam_size {beam} is above the limit of {s.max_beam_size}")
        n_best = options.n_best or 1
        if n_best > beam:
            raise InvalidArgument(f"n_best {n_best} is more than the beam ({beam}) can return")
        if options.max_length > s.max_output_tokens:
            raise InvalidArgument(f"max_length {options.max_length} is above the limit of {s.max_output_tokens}")
        return Prepared(src, model.search(len(src), beam, n_best, options.max_length))

    async def stream(
        self, model: TranslationModel, text: str, options: Options, deadline: float | None = None,
        pieces: bool = True,
    ) -> AsyncIterator[str | Result]:
        """Text pieces of the best translation as they become certain (unless not ``pieces``),
        then the ``Result``. Closing the iterator early (a cancelled call) stops the decoding
        at the next step."""
        prepared = self.prepare(model, text, options)
        job = model.submit(prepared, deadline, progress=pieces)
        detokenizer = model.target.detokenizer()
        try:
            async for event in job.events():
                if isinstance(event, Translation):
                    yield model.result(event, len(prepared.src))
                    return
                piece = "".join(detokenizer.push(i) for i in event)
                if piece:
                    yield piece
        finally:
            job.cancel()  # a no-op once finished

    async def translate(
        self, model: TranslationModel, text: str, options: Options, deadline: float | None = None
    ) -> Result:
        async with contextlib.aclosing(self.stream(model, text, options, deadline, pieces=False)) as events:
            async for event in events:
                if isinstance(event, Result):
                    return event
        raise AssertionError("a translation stream ends with its result")
