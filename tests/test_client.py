"""The Python client retries UNAVAILABLE and CANCELLED (what no handler answered), and nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from seqserve.client import Client
from seqserve.v1 import common_pb2, sentiment_pb2, sentiment_pb2_grpc


class _Flaky(sentiment_pb2_grpc.SentimentServicer):
    """Fails the first ``failures`` calls with ``code``, then answers."""

    def __init__(self) -> None:
        self.code, self.failures, self.calls = grpc.StatusCode.OK, 0, 0

    def Classify(self, request, context):
        self.calls += 1
        if self.calls <= self.failures:
            context.abort(self.code, "failing on purpose")
        result = sentiment_pb2.Classification(label="positive")
        return sentiment_pb2.ClassifyResponse(result=result, model=common_pb2.ModelId(task="sentiment", arch="gru"))


@pytest.fixture
def flaky() -> Iterator[tuple[_Flaky, str]]:
    servicer = _Flaky()
    server = grpc.server(ThreadPoolExecutor(2))
    sentiment_pb2_grpc.add_SentimentServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(None)


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED])
def test_unavailable_and_cancelled_are_retried(flaky, code):
    servicer, target = flaky
    servicer.code, servicer.failures = code, 2
    with Client(target, timeout=10) as client:
        assert client.classify("a fine film").label == "positive"
    assert servicer.calls == 3


@pytest.mark.parametrize("code", [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED])
def test_an_answer_is_not_retried(flaky, code):
    servicer, target = flaky
    servicer.code, servicer.failures = code, 1
    with Client(target, timeout=10) as client, pytest.raises(grpc.RpcError) as err:
        client.classify("a fine film")
    assert err.value.code() == code and servicer.calls == 1


def test_retries_end_after_three_attempts(flaky):
    servicer, target = flaky
    servicer.code, servicer.failures = grpc.StatusCode.UNAVAILABLE, 5
    with Client(target, timeout=10) as client, pytest.raises(grpc.RpcError) as err:
        client.classify("a fine film")
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and servicer.calls == 3
