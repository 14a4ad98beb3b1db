"""Load for a running stack or server: gRPC users of the sentiment task.

Each request is named ``<task>/<arch> <method>`` in locust's stats, so the summary
and the CSV give throughput, percentiles and failures per architecture.

    locust -f deploy/locustfile.py --headless -u 20 -r 5 -t 60s \
        --host 127.0.0.1:50051 --csv runs/load          # runs/load_stats.csv ...

Under compose: ``docker compose --profile load up locust`` (deploy/README.md).
The tagging and translation users join here when their tasks are served.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable

# locust runs users as gevent greenlets: grpcio must yield to them, not block.
from grpc.experimental import gevent as grpc_gevent

grpc_gevent.init_gevent()

import grpc  # noqa: E402
from locust import User, between, task  # noqa: E402

from seqserve.manifest import ARCHS  # noqa: E402
from seqserve.v1 import common_pb2, sentiment_pb2, sentiment_pb2_grpc  # noqa: E402

# LOAD_ARCHS="lstm gru" narrows the mix; the default asks every architecture.
LOAD_ARCHS = os.environ.get("LOAD_ARCHS", " ".join(ARCHS)).split()
TEXTS = [
    "a gripping, funny film",
    "dull and far too long",
    "the acting is wonderful but the plot falls apart in the second half",
    "an awful, lifeless remake",
    "great",
]


class SentimentUser(User):
    """Mostly single texts, some batches: what a client of the typed API sends."""

    wait_time = between(0.005, 0.05)

    def on_start(self) -> None:
        self._channel = grpc.insecure_channel(self.host)
        self._stub = sentiment_pb2_grpc.SentimentStub(self._channel)

    def on_stop(self) -> None:
        self._channel.close()

    def _call(self, name: str, call: Callable[[], object], expect: grpc.StatusCode = grpc.StatusCode.OK) -> None:
        started = time.perf_counter()
        error: Exception | None = None
        try:
            call()
            if expect is not grpc.StatusCode.OK:
                error = AssertionError(f"expected {expect.name}, got OK")
        except grpc.RpcError as exc:
            if exc.code() is not expect:
                error = exc
        self.environment.events.request.fire(
            request_type="grpc", name=name, response_time=(time.perf_counter() - started) * 1000,
            response_length=0, exception=error, context={},
        )

    @task(8)
    def classify(self) -> None:
        arch = random.choice(LOAD_ARCHS)
        request = sentiment_pb2.ClassifyRequest(text=random.choice(TEXTS), model=common_pb2.ModelSelector(arch=arch))
        self._call(f"sentiment/{arch} Classify", lambda: self._stub.Classify(request, timeout=10))

    @task(2)
    def classify_batch(self) -> None:
        arch = random.choice(LOAD_ARCHS)
        request = sentiment_pb2.ClassifyBatchRequest(texts=random.sample(TEXTS, 3), model=common_pb2.ModelSelector(arch=arch))
        self._call(f"sentiment/{arch} ClassifyBatch", lambda: self._stub.ClassifyBatch(request, timeout=10))

    @task(1)
    def classify_empty(self) -> None:
        """A refused call now and then, so the dashboard's errors panel has a line
        per architecture; locust counts it a success when the refusal comes."""
        arch = random.choice(LOAD_ARCHS)
        request = sentiment_pb2.ClassifyRequest(text="", model=common_pb2.ModelSelector(arch=arch))
        self._call(f"sentiment/{arch} Classify empty -> INVALID_ARGUMENT",
                   lambda: self._stub.Classify(request, timeout=10), expect=grpc.StatusCode.INVALID_ARGUMENT)
