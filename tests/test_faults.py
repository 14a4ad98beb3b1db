"""A repository with broken models: the good ones serve, the bad ones are named."""

from __future__ import annotations

import json

import grpc

from seqserve.v1 import common_pb2, models_pb2, models_pb2_grpc, sentiment_pb2, sentiment_pb2_grpc
from tests.fakes import write_fake_sentiment
from tests.servers import ServerProcess


def test_corrupt_and_mismatched_models_are_refused_by_name_and_the_rest_serve(tmp_path):
    repo = tmp_path / "models"
    write_fake_sentiment(repo, "lstm", 1, accuracy=0.7)
    write_fake_sentiment(repo, "lstm", 2, accuracy=0.7)
    corrupt = write_fake_sentiment(repo, "gru", 1)
    (corrupt / "model.onnx").write_bytes(b"not an onnx model at all")
    mismatched = write_fake_sentiment(repo, "rnn", 1)
    manifest = json.loads((mismatched / "manifest.json").read_text())
    manifest["arch"] = "transformer"
    (mismatched / "manifest.json").write_text(json.dumps(manifest))
    (repo / "sentiment" / "cnn" / "1").mkdir(parents=True)  # unknown architecture: ignored

    with ServerProcess(repo, tmp_path / "server.log") as server, grpc.insecure_channel(server.target) as ch:
        listing = models_pb2_grpc.ModelsStub(ch).ListModels(models_pb2.ListModelsRequest())
        by_key = {(m.id.arch, m.id.version): m for m in listing.models}
        assert by_key[("lstm", 1)].ready and by_key[("lstm", 2)].ready
        assert by_key[("lstm", 2)].is_default and not by_key[("lstm", 1)].is_default
        assert not by_key[("gru", 1)].ready and str(corrupt / "model.onnx") in by_key[("gru", 1)].error
        assert not by_key[("rnn", 1)].ready and "manifest.json" in by_key[("rnn", 1)].error

        stub = sentiment_pb2_grpc.SentimentStub(ch)
        reply = stub.Classify(sentiment_pb2.ClassifyRequest(text="a great film"))
        assert (reply.result.label, reply.model.arch, reply.model.version) == ("positive", "lstm", 2)
        old = stub.Classify(
            sentiment_pb2.ClassifyRequest(text="awful", model=common_pb2.ModelSelector(arch="lstm", version=1))
        )
        assert (old.result.label, old.model.version) == ("negative", 1)
        try:
            stub.Classify(sentiment_pb2.ClassifyRequest(text="x", model=common_pb2.ModelSelector(arch="gru")))
            raise AssertionError("a broken model answered")
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.NOT_FOUND
            assert "available: lstm" in err.details()
    assert str(corrupt / "model.onnx") in server.logs()


def test_an_empty_repository_keeps_health_not_serving(tmp_path):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    (tmp_path / "models").mkdir()
    server = ServerProcess(tmp_path / "models", tmp_path / "server.log").start(expect_serving=False)
    try:
        server.wait_for_health(health_pb2.HealthCheckResponse.NOT_SERVING, timeout=30)
        import time

        time.sleep(1)  # loading is finished by now, and still nothing serves
        with grpc.insecure_channel(server.target) as ch:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
            try:
                sentiment_pb2_grpc.SentimentStub(ch).Classify(sentiment_pb2.ClassifyRequest(text="good"), timeout=5)
                raise AssertionError("answered without models")
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop()


def test_an_onnx_runtime_failure_fails_only_its_request_and_is_counted(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from tests.servers import metric, scrape

    repo = tmp_path / "models"
    folder = write_fake_sentiment(repo, "lstm")
    # A vocabulary one word longer than the graph's table: that word's id is out of
    # bounds for ONNX Runtime's Gather, so only requests that use it fail.
    with open(folder / "vocab.txt", "a") as f:
        f.write("explode\n")
    with ServerProcess(repo, tmp_path / "server.log", tasks='["sentiment"]') as server, \
            grpc.insecure_channel(server.target) as ch:
        stub = sentiment_pb2_grpc.SentimentStub(ch)

        def classify(text: str) -> str:
            try:
                return stub.Classify(sentiment_pb2.ClassifyRequest(text=text), timeout=30).result.label
            except grpc.RpcError as err:
                return f"{err.code().name}: {err.details()}"

        texts = ["a good film", "explode", "awful", "great", "explode good"] * 4
        with ThreadPoolExecutor(10) as pool:  # concurrent, so failing and good requests share batches
            answers = list(pool.map(classify, texts))
        for text, answer in zip(texts, answers):
            if "explode" in text:
                assert answer.startswith("INTERNAL: sentiment/lstm/1: inference failed"), answer
            else:
                assert answer in ("positive", "negative"), answer
        assert classify("good") == "positive"  # and the model goes on
        assert metric(scrape(server), "seqserve_inference_errors_total", task="sentiment", arch="lstm") == 8
