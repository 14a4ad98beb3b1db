"""Health through a server's life, and a graceful stop under load."""

from __future__ import annotations

import signal
import threading

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from seqserve.v1 import common_pb2, sentiment_pb2, sentiment_pb2_grpc, translation_pb2, translation_pb2_grpc
from tests.fakes import write_fake_sentiment
from tests.servers import ServerProcess

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _repo(tmp_path):
    for arch in ("lstm", "gru"):
        write_fake_sentiment(tmp_path / "models", arch)
    return tmp_path / "models"


def test_health_goes_serving_then_not_serving_on_sigterm_and_the_process_exits_cleanly(tmp_path):
    # A long grace period: an open health watch is no work in flight, so it must not hold the stop.
    server = ServerProcess(_repo(tmp_path), tmp_path / "server.log", grace_period_s="60").start()
    seen: list[int] = []
    with grpc.insecure_channel(server.target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        assert stub.Check(health_pb2.HealthCheckRequest(service="seqserve.v1.Sentiment")).status == SERVING
        watch = stub.Watch(health_pb2.HealthCheckRequest(), timeout=20)
        seen.append(next(watch).status)
        server.signal(signal.SIGTERM)
        try:
            for reply in watch:
                seen.append(reply.status)
        except grpc.RpcError:
            pass  # the stream ends when the server goes away
    assert seen[0] == SERVING and NOT_SERVING in seen
    assert server.stop(timeout=30) == 0  # killed (not 0) if still running then
    assert "shutting down" in server.logs() and "stopped" in server.logs()
    assert "cancelling the calls gRPC still holds" in server.logs()
    assert "every in-flight RPC finished within the grace period" in server.logs()


def test_sigint_also_stops_gracefully(tmp_path):
    server = ServerProcess(_repo(tmp_path), tmp_path / "server.log").start()
    server.signal(signal.SIGINT)
    assert server.stop() == 0


def _calls_through_sigterm(server: ServerProcess, call, clients: int, calls: int, after_s: float) -> list[str]:
    """``clients`` threads make ``calls`` calls each (``call(channel)``, true when complete);
    SIGTERM lands ``after_s`` in. Returns every call's outcome: "ok" or a status name."""
    results: list[str] = []
    lock = threading.Lock()
    ready = threading.Barrier(clients + 1)  # every client connected before the clock starts

    def client() -> None:
        with grpc.insecure_channel(server.target) as ch:
            grpc.channel_ready_future(ch).result(timeout=30)
            ready.wait()
            for _ in range(calls):
                try:
                    outcome = "ok" if call(ch) else "incomplete"
                except grpc.RpcError as err:
                    outcome = err.code().name
                with lock:
                    results.append(outcome)
                if outcome != "ok":
                    return

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    ready.wait()
    threading.Timer(after_s, server.signal, (signal.SIGTERM,)).start()
    for t in threads:
        t.join(60)
    return results


def _assert_no_accepted_call_was_cut(server: ServerProcess, results: list[str]) -> None:
    assert server.stop() == 0
    assert results.count("ok") > 0
    # Calls that reach a closing server are refused (UNAVAILABLE, or CANCELLED for
    # those gRPC had queued but not yet handed to the application, cancelled once no
    # handler is busy rather than left to their deadline); none that a handler accepted
    # is cut off, as the server's own count says.
    assert set(results) <= {"ok", "UNAVAILABLE", "CANCELLED"}, set(results)
    assert "every in-flight RPC finished within the grace period" in server.logs()


def test_requests_under_way_at_sigterm_all_finish_and_later_ones_are_refused_cleanly(tmp_path):
    server = ServerProcess(_repo(tmp_path), tmp_path / "server.log", grace_period_s="10").start()
    request = sentiment_pb2.ClassifyRequest(text="a good film " * 20)
    results = _calls_through_sigterm(
        server, lambda ch: sentiment_pb2_grpc.SentimentStub(ch).Classify(request, timeout=10).result.label,
        clients=8, calls=200, after_s=0.3,
    )
    _assert_no_accepted_call_was_cut(server, results)


def test_translations_under_way_at_sigterm_finish_their_decoding(model_repository, tmp_path):
    server = ServerProcess(model_repository, tmp_path / "server.log", tasks='["translation"]',
                           grace_period_s="20").start()
    request = translation_pb2.TranslateRequest(
        text="And God said, Let there be light: and there was light. " * 3,
        model=common_pb2.ModelSelector(arch="transformer"), beam_size=4,
    )

    def translate(ch: grpc.Channel) -> bool:
        replies = list(translation_pb2_grpc.TranslationStub(ch).TranslateStream(request, timeout=30))
        return bool(replies) and replies[-1].HasField("result")

    results = _calls_through_sigterm(server, translate, clients=6, calls=50, after_s=0.5)
    _assert_no_accepted_call_was_cut(server, results)
