"""A small synchronous Python client for a seqserve server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from seqserve.v1 import (
    common_pb2,
    models_pb2,
    models_pb2_grpc,
    sentiment_pb2,
    sentiment_pb2_grpc,
    tagging_pb2,
    tagging_pb2_grpc,
    translation_pb2,
    translation_pb2_grpc,
)

DEFAULT_TARGET = "localhost:50051"

# gRPC retries a call that no handler answered: UNAVAILABLE (no connection yet, a replica
# shutting down) and CANCELLED sent by the server, which gRPC Python sends for a call it
# took in at the instant it stopped (a rolling restart behind nginx once lost a call so
# in tests/test_stack_processes.py). Every method retried here only reads; the tagging
# stream is not retried, its messages are the client's to resend.
_RETRY_CONFIG = json.dumps({"methodConfig": [{
    "name": [
        {"service": "seqserve.v1.Sentiment"}, {"service": "seqserve.v1.Translation"},
        {"service": "seqserve.v1.Models"}, {"service": "seqserve.v1.Tagging", "method": "Tag"},
    ],
    "retryPolicy": {
        "maxAttempts": 3, "initialBackoff": "0.05s", "maxBackoff": "0.5s", "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"],
    },
}]})
_OPTIONS = [("grpc.service_config", _RETRY_CONFIG), ("grpc.enable_retries", 1)]


@dataclass(frozen=True)
class Classification:
    label: str
    probabilities: dict[str, float]
    model: str  # "task/arch/version"
    latency_ms: float  # as the client saw it


@dataclass(frozen=True)
class ModelSummary:
    task: str
    arch: str
    version: int
    ready: bool
    is_default: bool
    quality: dict[str, float]
    parameters: int
    profile: str
    error: str


@dataclass(frozen=True)
class TaggedToken:
    index: int  # in the sentence (tag) or in the stream (tag_stream)
    token: str
    tag: str
    probability: float


@dataclass(frozen=True)
class StreamInfo:
    """The first answer of a tag stream: who tags it and how long a token waits."""

    model: str  # "task/arch/version"
    immediate: bool  # causal model: each token is tagged as soon as it is complete
    lookahead: int  # else: tokens that must follow a token before it is tagged


@dataclass(frozen=True)
class Hypothesis:
    text: str
    score: float  # what beam search ranks by: log-probability / length ** length_penalty
    log_prob: float
    length: int  # subword pieces
    truncated: bool  # cut by max_length


@dataclass(frozen=True)
class TranslationResult:
    hypotheses: list[Hypothesis]  # best first
    model: str  # "task/arch/version"
    source_length: int  # subword pieces

    @property
    def text(self) -> str:
        return self.hypotheses[0].text


def _translation(r: translation_pb2.TranslateResponse) -> TranslationResult:
    hyps = [Hypothesis(h.text, h.score, h.log_prob, h.length, h.truncated) for h in r.hypotheses]
    return TranslationResult(hyps, _model_name(r.model), r.source_length)


def _tokens(s: tagging_pb2.TaggedSentence) -> list[TaggedToken]:
    return [TaggedToken(t.index, t.token, t.tag, t.probability) for t in s.tokens]


def _model_name(m: common_pb2.ModelId) -> str:
    return f"{m.task}/{m.arch}/{m.version}"


def _classification(c: sentiment_pb2.Classification, model: str, latency_ms: float) -> Classification:
    return Classification(c.label, {p.label: p.probability for p in c.probabilities}, model, latency_ms)


class Client:
    """``with Client("localhost:50051") as c: c.classify("a gripping film")``

    ``tls_ca`` (PEM: the CA that signed the server's certificate) turns TLS on;
    ``tls_cert``/``tls_key`` add a client certificate (mutual TLS); ``token`` is
    sent as ``authorization: Bearer <token>`` with every call.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        timeout: float = 10.0,
        *,
        token: str | None = None,
        tls_ca: Path | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
    ) -> None:
        if tls_ca or tls_cert:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=tls_ca.read_bytes() if tls_ca else None,
                private_key=tls_key.read_bytes() if tls_key else None,
                certificate_chain=tls_cert.read_bytes() if tls_cert else None,
            )
            self._channel = grpc.secure_channel(target, credentials, options=_OPTIONS)
        else:
            self._channel = grpc.insecure_channel(target, options=_OPTIONS)
        self._timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._sentiment = sentiment_pb2_grpc.SentimentStub(self._channel)
        self._models = models_pb2_grpc.ModelsStub(self._channel)
        self._tagging = tagging_pb2_grpc.TaggingStub(self._channel)
        self._translation = translation_pb2_grpc.TranslationStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until health says SERVING; raise TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                reply = self._health.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not SERVING after {timeout:.0f}s")
            time.sleep(0.2)

    def classify(self, text: str, arch: str = "", version: int = 0) -> Classification:
        request = sentiment_pb2.ClassifyRequest(text=text, model=common_pb2.ModelSelector(arch=arch, version=version))
        started = time.perf_counter()
        reply = self._sentiment.Classify(request, timeout=self._timeout, metadata=self._metadata)
        latency = (time.perf_counter() - started) * 1000
        return _classification(reply.result, _model_name(reply.model), latency)

    def classify_batch(self, texts: list[str], arch: str = "", version: int = 0) -> list[Classification]:
        request = sentiment_pb2.ClassifyBatchRequest(
            texts=texts, model=common_pb2.ModelSelector(arch=arch, version=version)
        )
        started = time.perf_counter()
        reply = self._sentiment.ClassifyBatch(request, timeout=self._timeout, metadata=self._metadata)
        latency = (time.perf_counter() - started) * 1000
        return [_classification(c, _model_name(reply.model), latency) for c in reply.results]

    def tag(
        self, sentences: list[str | list[str]], arch: str = "", version: int = 0
    ) -> tuple[list[list[TaggedToken]], str]:
        """Tag whole sentences (text, or already split tokens); returns the tags and the model."""
        request = tagging_pb2.TagRequest(
            sentences=[
                tagging_pb2.Sentence(text=s) if isinstance(s, str) else tagging_pb2.Sentence(tokens={"tokens": s})
                for s in sentences
            ],
            model=common_pb2.ModelSelector(arch=arch, version=version),
        )
        reply = self._tagging.Tag(request, timeout=self._timeout, metadata=self._metadata)
        return [_tokens(s) for s in reply.sentences], _model_name(reply.model)

    def tag_stream(
        self, chunks: Iterable[str], arch: str = "", version: int = 0, timeout: float | None = None
    ) -> Iterator[StreamInfo | list[TaggedToken]]:
        """Stream raw text cut anywhere; yields a StreamInfo, then tags as the server decides them.

        The stream ends when ``chunks`` does: the server then tags what was still
        waiting for its right context. ``timeout`` bounds the whole stream (default none).
        """

        def requests() -> Iterator[tagging_pb2.TagStreamRequest]:
            yield tagging_pb2.TagStreamRequest(model=common_pb2.ModelSelector(arch=arch, version=version))
            for chunk in chunks:
                yield tagging_pb2.TagStreamRequest(text=chunk)

        for reply in self._tagging.TagStream(requests(), timeout=timeout, metadata=self._metadata):
            if reply.HasField("started"):
                st = reply.started
                yield StreamInfo(
                    _model_name(st.model), st.mode == tagging_pb2.StreamStarted.IMMEDIATE, st.lookahead
                )
            else:
                yield _tokens(reply.tags)

    def translate(
        self, text: str, arch: str = "", version: int = 0, *, beam_size: int = 0, max_length: int = 0,
        n_best: int = 0,
    ) -> TranslationResult:
        """Translate English text to Spanish; 0 leaves an option to the server (beam 4, n_best 1)."""
        request = self._translate_request(text, arch, version, beam_size, max_length, n_best)
        return _translation(self._translation.Translate(request, timeout=self._timeout, metadata=self._metadata))

    def translate_stream(
        self, text: str, arch: str = "", version: int = 0, *, beam_size: int = 0, max_length: int = 0,
        n_best: int = 0,
    ) -> Iterator[str | TranslationResult]:
        """Pieces of the best translation's text as they are decoded, then the whole result."""
        request = self._translate_request(text, arch, version, beam_size, max_length, n_best)
        for reply in self._translation.TranslateStream(request, timeout=self._timeout, metadata=self._metadata):
            yield _translation(reply.result) if reply.HasField("result") else reply.text

    @staticmethod
    def _translate_request(
        text: str, arch: str, version: int, beam_size: int, max_length: int, n_best: int
    ) -> translation_pb2.TranslateRequest:
        return translation_pb2.TranslateRequest(
            text=text, model=common_pb2.ModelSelector(arch=arch, version=version), beam_size=beam_size,
            max_length=max_length, n_best=n_best,
        )

    def list_models(self, task: str = "") -> list[ModelSummary]:
        reply = self._models.ListModels(models_pb2.ListModelsRequest(task=task), timeout=self._timeout, metadata=self._metadata)
        return [
            ModelSummary(
                m.id.task, m.id.arch, m.id.version, m.ready, m.is_default, dict(m.quality),
                m.parameters, m.profile, m.error,
            )
            for m in reply.models
        ]
