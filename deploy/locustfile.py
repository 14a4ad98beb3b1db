"""Load for a running stack or server: gRPC users of the sentiment, tagging and translation tasks.

Each request is named ``<task>/<arch> <method>`` in locust's stats, so the summary
and the CSV give throughput, percentiles and failures per architecture.

    locust -f deploy/locustfile.py --headless -u 20 -r 5 -t 60s \
        --host 127.0.0.1:50051 --csv runs/load          # runs/load_stats.csv ...

Under compose: ``docker compose --profile load up locust`` (deploy/README.md).
The mix: sentiment users (weight 3), tagging users (weight 2; unary Tag and
TagStream, a stream's time being from its first message to its last tag) and
translation users (weight 1; Translate with beam 4 and TranslateStream greedy,
a stream's time being to its last piece).
"""

from __future__ import annotations

import itertools
import os
import random
import time
from collections.abc import Callable, Iterator

# locust runs users as gevent greenlets: grpcio must yield to them, not block.
from grpc.experimental import gevent as grpc_gevent

grpc_gevent.init_gevent()

import grpc  # noqa: E402
from locust import User, between, task  # noqa: E402

from seqserve.manifest import ARCHS  # noqa: E402
from seqserve.v1 import (  # noqa: E402
    common_pb2,
    sentiment_pb2,
    sentiment_pb2_grpc,
    tagging_pb2,
    tagging_pb2_grpc,
    translation_pb2,
    translation_pb2_grpc,
)

# LOAD_ARCHS="lstm gru" narrows the mix; the default asks every architecture.
LOAD_ARCHS = os.environ.get("LOAD_ARCHS", " ".join(ARCHS)).split()
TEXTS = [
    "a gripping, funny film",
    "dull and far too long",
    "the acting is wonderful but the plot falls apart in the second half",
    "an awful, lifeless remake",
    "great",
]


STORIES = [
    "The jury said it did find that many of Atlanta's registration practices were handled well.",
    "She quickly reorganized the committee, and nobody complained about it afterwards.",
    "In 1961 the new bridge opened to traffic from both banks of the river.",
]


VERSES = [
    "In the beginning God created the heavens and the earth.",
    "And God said, Let there be light: and there was light.",
    "Jesus wept.",
    "The Lord is my shepherd; I shall not want.",
]


class GrpcUser(User):
    """One channel per user; every call reported to locust by name."""

    abstract = True
    wait_time = between(0.005, 0.05)

    def on_start(self) -> None:
        self._channel = grpc.insecure_channel(self.host)
        self._archs: dict[str, Iterator[str]] = {}

    def _arch(self, method: str) -> str:
        """The next architecture for ``method``: each method asks every one in turn, from a
        random start, so that even a short run reports every architecture (random choices
        left one out now and then)."""
        if method not in self._archs:
            start = random.randrange(len(LOAD_ARCHS))
            self._archs[method] = itertools.cycle(LOAD_ARCHS[start:] + LOAD_ARCHS[:start])
        return next(self._archs[method])

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


class SentimentUser(GrpcUser):
    """Mostly single texts, some batches: what a client of the typed API sends."""

    weight = 3

    def on_start(self) -> None:
        super().on_start()
        self._stub = sentiment_pb2_grpc.SentimentStub(self._channel)

    @task(8)
    def classify(self) -> None:
        arch = self._arch("classify")
        request = sentiment_pb2.ClassifyRequest(text=random.choice(TEXTS), model=common_pb2.ModelSelector(arch=arch))
        self._call(f"sentiment/{arch} Classify", lambda: self._stub.Classify(request, timeout=10))

    @task(2)
    def classify_batch(self) -> None:
        arch = self._arch("classify_batch")
        request = sentiment_pb2.ClassifyBatchRequest(texts=random.sample(TEXTS, 3), model=common_pb2.ModelSelector(arch=arch))
        self._call(f"sentiment/{arch} ClassifyBatch", lambda: self._stub.ClassifyBatch(request, timeout=10))

    @task(1)
    def classify_empty(self) -> None:
        """A refused call now and then, so the dashboard's errors panel has a line
        per architecture; locust counts it a success when the refusal comes."""
        arch = self._arch("classify_empty")
        request = sentiment_pb2.ClassifyRequest(text="", model=common_pb2.ModelSelector(arch=arch))
        self._call(f"sentiment/{arch} Classify empty -> INVALID_ARGUMENT",
                   lambda: self._stub.Classify(request, timeout=10), expect=grpc.StatusCode.INVALID_ARGUMENT)


class TaggingUser(GrpcUser):
    """Whole sentences, and streams of text cut into chunks as a typist would send them."""

    weight = 2

    def on_start(self) -> None:
        super().on_start()
        self._stub = tagging_pb2_grpc.TaggingStub(self._channel)

    @task(2)
    def tag(self) -> None:
        arch = self._arch("tag")
        request = tagging_pb2.TagRequest(
            sentences=[tagging_pb2.Sentence(text=random.choice(STORIES))], model=common_pb2.ModelSelector(arch=arch)
        )
        self._call(f"tagging/{arch} Tag", lambda: self._stub.Tag(request, timeout=10))

    @task(3)
    def tag_stream(self) -> None:
        arch = self._arch("tag_stream")
        text = random.choice(STORIES)
        cuts = sorted(random.sample(range(1, len(text)), 6))
        messages = [tagging_pb2.TagStreamRequest(model=common_pb2.ModelSelector(arch=arch))] + [
            tagging_pb2.TagStreamRequest(text=text[a:b]) for a, b in zip([0, *cuts], [*cuts, len(text)])
        ]
        self._call(f"tagging/{arch} TagStream", lambda: list(self._stub.TagStream(iter(messages), timeout=10)))


class TranslationUser(GrpcUser):
    """Verses translated whole with beam search, and streamed greedily as a reader would watch them."""

    weight = 1

    def on_start(self) -> None:
        super().on_start()
        self._stub = translation_pb2_grpc.TranslationStub(self._channel)

    def _request(self, beam_size: int) -> tuple[str, translation_pb2.TranslateRequest]:
        arch = self._arch(f"translate, beam {beam_size}")
        model = common_pb2.ModelSelector(arch=arch)
        return arch, translation_pb2.TranslateRequest(text=random.choice(VERSES), model=model, beam_size=beam_size)

    @task(1)
    def translate(self) -> None:
        arch, request = self._request(beam_size=4)
        self._call(f"translation/{arch} Translate", lambda: self._stub.Translate(request, timeout=30))

    @task(1)
    def translate_stream(self) -> None:
        arch, request = self._request(beam_size=1)
        self._call(f"translation/{arch} TranslateStream",
                   lambda: list(self._stub.TranslateStream(request, timeout=30)))
