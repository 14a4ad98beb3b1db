"""Prometheus metrics of the server, on a registry the caller owns.

RPC-level series are recorded by one interceptor; model-level series (queue
wait, ORT time, batch size) by the batcher, where that time is spent.
"""

from __future__ import annotations

from collections.abc import Sequence

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from service.decode_scheduler import DecodeJob

# Sub-millisecond to seconds: a raw ORT run is ~0.2 ms, a long decode seconds.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LENGTH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    """Every series the server exports. Pass a fresh registry per server (and per test)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.request_latency = Histogram(
            "seqserve_request_duration_seconds",
            "Whole RPC time on the server, from handler start to last response.",
            ["task", "arch", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "seqserve_requests",
            "Finished RPCs by gRPC status code.",
            ["task", "arch", "method", "code"],
            registry=registry,
        )
        self.queue_latency = Histogram(
            "seqserve_queue_duration_seconds",
            "Time an item waited in a model's batcher before its ORT run started.",
            ["task", "arch"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.inference_latency = Histogram(
            "seqserve_inference_duration_seconds",
            "Time of one ONNX Runtime run (a whole batch).",
            ["task", "arch"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "seqserve_batch_size",
            "Items per ONNX Runtime run.",
            ["task", "arch"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.inference_errors = Counter(
            "seqserve_inference_errors",
            "Requests whose ONNX Runtime run raised (a failed batch is rerun item by item: only failing items count).",
            ["task", "arch"],
            registry=registry,
        )
        self.model_info = Gauge(
            "seqserve_model_info",
            "1 for every model version in the repository; ready says whether it serves.",
            ["task", "arch", "version", "ready", "default"],
            registry=registry,
        )
        self.token_latency = Histogram(
            "seqserve_token_latency_seconds",
            "Streams: time from a token's arrival to its tag being sent.",
            ["task", "arch"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.tokens_tagged = Counter(
            "seqserve_stream_tokens", "Streams: tokens tagged.", ["task", "arch"], registry=registry
        )
        self.active_streams = Gauge(
            "seqserve_active_streams", "Streams open now, each holding its state.", ["task", "arch"],
            registry=registry,
        )
        self.streams_ended = Counter(
            "seqserve_streams_ended",
            "Streams ended, by reason: completed, cancelled, idle_timeout, error, refused.",
            ["task", "arch", "reason"],
            registry=registry,
        )
        self.first_token_latency = Histogram(
            "seqserve_decode_first_token_seconds",
            "Translation: time from a request's arrival to its first certain output token.",
            ["task", "arch"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.time_per_token = Histogram(
            "seqserve_decode_time_per_token_seconds",
            "Translation: per request, time after the first output token divided by the tokens that followed.",
            ["task", "arch"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.output_tokens = Histogram(
            "seqserve_decode_output_tokens",
            "Translation: output length of a finished request, in subword pieces (<eos> included).",
            ["task", "arch"],
            buckets=LENGTH_BUCKETS,
            registry=registry,
        )
        self.decoding = Gauge(
            "seqserve_decode_sequences",
            "Translation: requests in a model's running decode batch now.",
            ["task", "arch"],
            registry=registry,
        )
        self.decodes_ended = Counter(
            "seqserve_decodes_ended",
            "Translation requests ended, by reason: completed, cancelled, deadline, error, shutdown.",
            ["task", "arch", "reason"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "seqserve_in_flight_requests",
            "RPCs being handled now.",
            ["task"],
            registry=registry,
        )


class ModelObserver:
    """Feeds one model's batcher events into the model-level series."""

    def __init__(self, metrics: Metrics, task: str, arch: str) -> None:
        self._queue = metrics.queue_latency.labels(task, arch)
        self._inference = metrics.inference_latency.labels(task, arch)
        self._batch = metrics.batch_size.labels(task, arch)
        self._errors = metrics.inference_errors.labels(task, arch)

    def on_batch(self, size: int, queue_waits: Sequence[float], run_seconds: float) -> None:
        self._batch.observe(size)
        self._inference.observe(run_seconds)
        for wait in queue_waits:
            self._queue.observe(wait)

    def on_error(self, size: int, error: BaseException) -> None:
        self._errors.inc()


class DecodeMetrics(ModelObserver):
    """Feeds one translation model's decode scheduler into the series: encoder runs and
    decoder steps like batches, plus the per-request decoding series."""

    def __init__(self, metrics: Metrics, task: str, arch: str) -> None:
        super().__init__(metrics, task, arch)
        self._first = metrics.first_token_latency.labels(task, arch)
        self._per_token = metrics.time_per_token.labels(task, arch)
        self._length = metrics.output_tokens.labels(task, arch)
        self._running = metrics.decoding.labels(task, arch)
        self._ended = {
            reason: metrics.decodes_ended.labels(task, arch, reason)
            for reason in ("completed", "cancelled", "deadline", "error", "shutdown")
        }

    def on_encode(self, size: int, queue_waits: Sequence[float], seconds: float) -> None:
        self.on_batch(size, queue_waits, seconds)

    def on_step(self, rows: int, seconds: float) -> None:
        self.on_batch(rows, (), seconds)

    def on_first_token(self, seconds: float) -> None:
        self._first.observe(seconds)

    def on_end(self, job: DecodeJob, reason: str) -> None:
        self._ended[reason].inc()
        if reason == "completed":
            self._length.observe(job.output_tokens)
            if job.first_token_at is not None and job.finished_at is not None and job.output_tokens > 1:
                self._per_token.observe((job.finished_at - job.first_token_at) / (job.output_tokens - 1))

    def on_running(self, sequences: int) -> None:
        self._running.set(sequences)
