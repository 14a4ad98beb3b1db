"""A small synchronous Python client for a seqserve server."""

from __future__ import annotations

import time
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from seqserve.v1 import common_pb2, models_pb2, models_pb2_grpc, sentiment_pb2, sentiment_pb2_grpc

DEFAULT_TARGET = "localhost:50051"


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


def _model_name(m: common_pb2.ModelId) -> str:
    return f"{m.task}/{m.arch}/{m.version}"


def _classification(c: sentiment_pb2.Classification, model: str, latency_ms: float) -> Classification:
    return Classification(c.label, {p.label: p.probability for p in c.probabilities}, model, latency_ms)


class Client:
    """``with Client("localhost:50051") as c: c.classify("a gripping film")``"""

    def __init__(self, target: str = DEFAULT_TARGET, timeout: float = 10.0) -> None:
        self._channel = grpc.insecure_channel(target)
        self._timeout = timeout
        self._sentiment = sentiment_pb2_grpc.SentimentStub(self._channel)
        self._models = models_pb2_grpc.ModelsStub(self._channel)
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
        reply = self._sentiment.Classify(request, timeout=self._timeout)
        latency = (time.perf_counter() - started) * 1000
        return _classification(reply.result, _model_name(reply.model), latency)

    def classify_batch(self, texts: list[str], arch: str = "", version: int = 0) -> list[Classification]:
        request = sentiment_pb2.ClassifyBatchRequest(
            texts=texts, model=common_pb2.ModelSelector(arch=arch, version=version)
        )
        started = time.perf_counter()
        reply = self._sentiment.ClassifyBatch(request, timeout=self._timeout)
        latency = (time.perf_counter() - started) * 1000
        return [_classification(c, _model_name(reply.model), latency) for c in reply.results]

    def list_models(self, task: str = "") -> list[ModelSummary]:
        reply = self._models.ListModels(models_pb2.ListModelsRequest(task=task), timeout=self._timeout)
        return [
            ModelSummary(
                m.id.task, m.id.arch, m.id.version, m.ready, m.is_default, dict(m.quality),
                m.parameters, m.profile, m.error,
            )
            for m in reply.models
        ]
