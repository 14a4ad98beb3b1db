"""Past the server's limit on calls in progress: RESOURCE_EXHAUSTED at once, health still answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from seqserve.client import Client
from tests.servers import ServerProcess, error_of, metric, scrape
from tests.test_tagging_server import Stream


@pytest.fixture(scope="module")
def two_calls(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("two-calls") / "server.log"
    with ServerProcess(model_repository, log, tasks='["sentiment", "tagging"]', max_concurrent_rpcs="2") as proc:
        yield proc


def test_calls_past_the_limit_are_refused_at_once_and_health_still_answers(two_calls):
    with grpc.insecure_channel(two_calls.target) as channel, Client(two_calls.target) as client:
        streams = [Stream(channel, "lstm") for _ in range(2)]  # two calls held open
        for s in streams:
            s.started()
        code, details = error_of(lambda: client.classify("a good film"))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "calls in progress" in details
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        for s in streams:
            s.close()
        assert client.classify("a good film").label  # room again
    assert metric(scrape(two_calls), "seqserve_requests_total", code="RESOURCE_EXHAUSTED") >= 1
