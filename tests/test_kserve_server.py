"""The Open Inference Protocol (KServe v2 gRPC) against a real server, with the
protocol's own messages: names, readiness, metadata, tensors in both encodings,
and every way a request can be wrong."""

from __future__ import annotations

import re
import signal
import struct
import time
import urllib.request
from collections.abc import Callable, Iterator

import grpc
import numpy as np
import pytest

from seqserve.kserve import grpc_predict_v2_pb2 as pb
from seqserve.kserve import grpc_predict_v2_pb2_grpc as pb_grpc
from seqserve.text import tokenize
from seqserve.v1 import common_pb2, sentiment_pb2, sentiment_pb2_grpc
from tests.fakes import VOCAB, write_fake_sentiment
from tests.servers import ServerProcess

Stub = pb_grpc.GRPCInferenceServiceStub


def ids(text: str) -> list[int]:
    """Token ids of ``text`` for the fake models, tokenized as the server would."""
    return [VOCAB.index(t) if t in VOCAB else VOCAB.index("<unk>") for t in tokenize(text)]


def tensor_request(
    model: str, rows: list[list[int]], version: str = "", raw: bool = False, outputs: tuple[str, ...] = ()
) -> pb.ModelInferRequest:
    """tokens [B, T] right-padded with 0 and lengths [B], typed or raw."""
    width = max(len(r) for r in rows)
    tokens = np.array([r + [0] * (width - len(r)) for r in rows], dtype=np.int64)
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    request = pb.ModelInferRequest(model_name=model, model_version=version, outputs=[{"name": n} for n in outputs])
    for name, array in (("tokens", tokens), ("lengths", lengths)):
        tensor = request.inputs.add(name=name, datatype="INT64", shape=array.shape)
        if raw:
            request.raw_input_contents.append(array.astype("<i8").tobytes())
        else:
            tensor.contents.int64_contents.extend(array.ravel().tolist())
    return request


def text_request(model: str, texts: list[str], raw: bool = False) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name="text", datatype="BYTES", shape=[len(texts)])
    encoded = [t.encode() for t in texts]
    if raw:
        request.raw_input_contents.append(b"".join(struct.pack("<I", len(b)) + b for b in encoded))
    else:
        tensor.contents.bytes_contents.extend(encoded)
    return request


def outputs_of(reply: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    """Every output as numpy, from whichever encoding the server chose."""
    found = {}
    for i, out in enumerate(reply.outputs):
        if reply.raw_output_contents:
            data = reply.raw_output_contents[i]
            if out.datatype == "BYTES":
                items, at = [], 0
                while at < len(data):
                    (n,) = struct.unpack_from("<I", data, at)
                    items.append(data[at + 4 : at + 4 + n])
                    at += 4 + n
                array = np.array(items, dtype=object)
            else:
                array = np.frombuffer(data, dtype="<f4")
        elif out.datatype == "BYTES":
            array = np.array(list(out.contents.bytes_contents), dtype=object)
        else:
            array = np.array(out.contents.fp32_contents, dtype=np.float32)
        found[out.name] = array.reshape(list(out.shape))
    return found


def status_of(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("kserve")
    repo = tmp / "models"
    write_fake_sentiment(repo, "lstm", 1, accuracy=0.8)
    write_fake_sentiment(repo, "lstm", 2, accuracy=0.8)
    write_fake_sentiment(repo, "gru", 1, accuracy=0.6)
    write_fake_sentiment(repo, "rnn", 1, accuracy=0.6)  # touched by ModelInfer only: its metrics are the protocol's
    broken = write_fake_sentiment(repo, "bilstm", 1)
    (broken / "model.onnx").write_bytes(b"not a model")
    # A batch wait lets concurrent requests meet in one ORT run, as under load.
    with ServerProcess(repo, tmp / "server.log", max_batch_wait_ms="20") as proc:
        yield proc


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as ch:
        yield ch


@pytest.fixture
def stub(channel: grpc.Channel) -> Stub:
    return Stub(channel)


def classify(channel: grpc.Channel, text: str, arch: str = "", version: int = 0) -> dict[str, float]:
    reply = sentiment_pb2_grpc.SentimentStub(channel).Classify(
        sentiment_pb2.ClassifyRequest(text=text, model=common_pb2.ModelSelector(arch=arch, version=version))
    )
    return {p.label: p.probability for p in reply.result.probabilities}


def test_server_is_live_ready_and_names_itself(stub):
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    meta = stub.ServerMetadata(pb.ServerMetadataRequest())
    assert meta.name == "seqserve" and re.fullmatch(r"\d+\.\d+\.\d+.*", meta.version)


def test_model_metadata_reports_the_manifest_tensors_in_protocol_types(stub):
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="sentiment-lstm"))
    assert (meta.name, list(meta.versions), meta.platform) == ("sentiment-lstm", ["1", "2"], "onnxruntime_onnx")
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("tokens", "INT64", [-1, -1]),
        ("lengths", "INT64", [-1]),
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [
        ("logits", "FP32", [-1, 2]),
        ("probabilities", "FP32", [-1, 2]),
        ("label", "BYTES", [-1]),
    ]
    # The bare task name is the task's default architecture (best accuracy here).
    assert stub.ModelMetadata(pb.ModelMetadataRequest(name="sentiment")).name == "sentiment-lstm"
    assert stub.ModelMetadata(pb.ModelMetadataRequest(name="sentiment-gru", version="1")).versions == ["1"]


@pytest.mark.parametrize("raw", [False, True], ids=["contents", "raw"])
def test_tensors_and_text_give_the_typed_apis_answer(stub, channel, raw):
    texts = ["a good great film", "awful , bad", "film"]
    expected = [classify(channel, t, "gru") for t in texts]
    for request in (tensor_request("sentiment-gru", [ids(t) for t in texts], raw=raw),
                    text_request("sentiment-gru", texts, raw=raw)):
        reply = stub.ModelInfer(request)
        assert (reply.model_name, reply.model_version) == ("sentiment-gru", "1")
        assert bool(reply.raw_output_contents) == raw  # answered in the request's encoding
        out = outputs_of(reply)
        assert out["probabilities"].shape == out["logits"].shape == (3, 2)
        for row, want in zip(out["probabilities"], expected, strict=True):
            assert row.tolist() == pytest.approx([want["negative"], want["positive"]], abs=1e-6)
        assert [b.decode() for b in out["label"]] == ["positive", "negative", max(expected[2], key=expected[2].get)]
        assert out["logits"][0].tolist() == [0.0, 5.0]  # good (0, 2) + great (0, 3), straight from the model


def test_tokens_past_a_rows_length_are_ignored(stub):
    padded = tensor_request("sentiment-lstm", [[2]])
    padded.inputs[0].shape[:] = [1, 3]
    padded.inputs[0].contents.int64_contents[:] = [2, 6, 6]  # "good awful awful", length 1
    alone = stub.ModelInfer(tensor_request("sentiment-lstm", [[2]]))
    assert outputs_of(stub.ModelInfer(padded))["logits"].tolist() == outputs_of(alone)["logits"].tolist()


def test_versions_requested_outputs_and_request_id(stub):
    request = tensor_request("sentiment-lstm", [ids("great")], version="1", outputs=("label", "probabilities"))
    request.id = "req-42"
    reply = stub.ModelInfer(request)
    assert (reply.model_version, reply.id) == ("1", "req-42")
    assert [o.name for o in reply.outputs] == ["label", "probabilities"]
    assert stub.ModelInfer(tensor_request("sentiment-lstm", [[2]])).model_version == "2"  # empty: the newest
    assert stub.ModelInfer(tensor_request("sentiment", [[2]])).model_name == "sentiment-lstm"


def _edit(request: pb.ModelInferRequest, change: Callable[[pb.ModelInferRequest], object]) -> pb.ModelInferRequest:
    change(request)
    return request


def _bad_requests() -> list[tuple[str, pb.ModelInferRequest, str]]:
    ok = lambda **kw: tensor_request("sentiment-lstm", [[2, 5], [3]], **kw)  # noqa: E731
    tokens, lengths = 0, 1
    return [
        ("wrong dtype", _edit(ok(raw=True), lambda r: (setattr(r.inputs[tokens], "datatype", "INT32"),
                                                       r.raw_input_contents.__setitem__(0, b"\1\0\0\0" * 4))),
         r"input 'tokens' is INT32; the model takes INT64"),
        ("dtype's field empty", _edit(ok(), lambda r: setattr(r.inputs[tokens], "datatype", "INT32")),
         r"input 'tokens' has 0 values in contents.int_contents; shape \[2, 2\] needs 4"),
        ("wrong rank", _edit(ok(), lambda r: r.inputs[tokens].shape.__setitem__(slice(None), [4])),
         r"input 'tokens' has shape \[4\]; the model takes \[batch, length\]"),
        ("batch mismatch", _edit(ok(), lambda r: (r.inputs[lengths].shape.__setitem__(slice(None), [1]),
                                                  r.inputs[lengths].contents.int64_contents.pop())),
         r"input 'lengths' has batch 1, another input has batch 2"),
        ("too few values", _edit(ok(), lambda r: r.inputs[tokens].contents.int64_contents.pop()),
         r"input 'tokens' has 3 values in contents.int64_contents; shape \[2, 2\] needs 4"),
        ("raw size", _edit(ok(raw=True), lambda r: r.raw_input_contents.__setitem__(0, b"\0" * 24)),
         r"input 'tokens' has 24 raw bytes; shape \[2, 2\] of INT64 needs 32"),
        ("raw count", _edit(ok(raw=True), lambda r: r.raw_input_contents.pop()),
         r"1 raw_input_contents for 2 inputs"),
        ("raw and contents", _edit(ok(raw=True), lambda r: r.inputs[tokens].contents.int64_contents.append(1)),
         r"input 'tokens' has contents and the request has raw_input_contents"),
        ("length 0", _edit(ok(), lambda r: r.inputs[lengths].contents.int64_contents.__setitem__(1, 0)),
         r"lengths\[1\] is 0; it must be between 1 and the tokens' length 2"),
        ("length past tokens", _edit(ok(), lambda r: r.inputs[lengths].contents.int64_contents.__setitem__(1, 3)),
         r"lengths\[1\] is 3"),
        ("id past vocabulary", tensor_request("sentiment-lstm", [[2, 99]]),
         r"tokens\[0\] has token id 99; this model's ids are 0..6"),
        ("negative id", tensor_request("sentiment-lstm", [[-1]]), r"token id -1"),
        ("too many tokens", tensor_request("sentiment-lstm", [[2] * 257]), r"257 tokens; the limit is 256"),
        ("batch too large", tensor_request("sentiment-lstm", [[2]] * 65), r"65 rows in one batch; the limit is 64"),
        ("empty batch", _edit(ok(), lambda r: [(t.shape.__setitem__(0, 0), t.contents.Clear()) for t in r.inputs]),
         r"rows is empty"),
        ("missing input", _edit(ok(), lambda r: r.inputs.pop()),
         r"inputs \['tokens'\]: send either lengths and tokens .* or text"),
        ("text and tokens", _edit(ok(), lambda r: r.inputs.add(name="text", datatype="BYTES", shape=[1],
                                                              contents={"bytes_contents": [b"good"]})),
         r"send either"),
        ("given twice", _edit(ok(), lambda r: r.inputs.append(r.inputs[tokens])), r"input 'tokens' is given twice"),
        ("unknown datatype", _edit(ok(), lambda r: setattr(r.inputs[tokens], "datatype", "FLOAT")),
         r"input 'tokens' has datatype 'FLOAT'; known: BOOL"),
        ("unknown output", tensor_request("sentiment-lstm", [[2]], outputs=("logits", "scores")),
         r"no output named 'scores'; outputs: logits, probabilities, label"),
        ("text not BYTES", _edit(text_request("sentiment-lstm", ["good"]),
                                 lambda r: (setattr(r.inputs[0], "datatype", "INT64"), r.inputs[0].contents.Clear(),
                                            r.inputs[0].contents.int64_contents.append(2))),
         r"input 'text' is INT64 \[1\]; it takes BYTES \[batch\]"),
        ("text not UTF-8", _edit(text_request("sentiment-lstm", ["x"]),
                                 lambda r: r.inputs[0].contents.bytes_contents.__setitem__(0, b"\xff\xfe")),
         r"input 'text' is not valid UTF-8"),
        ("empty text", text_request("sentiment-lstm", ["good", " "]), r"texts\[1\] is empty"),
        ("raw BYTES cut short", _edit(text_request("sentiment-lstm", ["good"], raw=True),
                                      lambda r: r.raw_input_contents.__setitem__(0, b"\x09\0\0\0good")),
         r"a raw BYTES element says 9 bytes but 4 are left"),
    ]


def test_malformed_requests_get_invalid_argument_with_a_reason(stub):
    for what, request, reason in _bad_requests():
        code, details = status_of(lambda: stub.ModelInfer(request, timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, f"{what}: {code} {details}"
        assert re.search(reason, details), f"{what}: {details}"
    assert stub.ModelInfer(tensor_request("sentiment-lstm", [[2]])).outputs  # and it still serves


def test_unknown_models_and_versions_are_not_found_naming_what_exists(stub):
    for call in (
        lambda: stub.ModelInfer(tensor_request("sentiment-cnn", [[2]])),
        lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name="sentiment-cnn")),
        lambda: stub.ModelReady(pb.ModelReadyRequest(name="sentiment-cnn")),
    ):
        code, details = status_of(call)
        assert code == grpc.StatusCode.NOT_FOUND
        assert details == "model 'sentiment-cnn' is not served; models: sentiment, sentiment-gru, sentiment-lstm, sentiment-rnn"
    for version in ("3", "latest", "-1"):
        code, details = status_of(lambda: stub.ModelInfer(tensor_request("sentiment-lstm", [[2]], version=version)))
        assert code == grpc.StatusCode.NOT_FOUND
        assert details == f"model 'sentiment-lstm' has no version '{version}'; versions: 1, 2"
    code, details = status_of(lambda: stub.ModelInfer(tensor_request("sentiment-bilstm", [[2]])))
    assert code == grpc.StatusCode.NOT_FOUND and "not served" in details  # in the repository, but broken


def test_model_ready_per_model_and_version(stub):
    def ready(name: str, version: str = "") -> bool:
        return stub.ModelReady(pb.ModelReadyRequest(name=name, version=version)).ready

    assert ready("sentiment") and ready("sentiment-lstm") and ready("sentiment-lstm", "1") and ready("sentiment-gru")
    assert not ready("sentiment-bilstm") and not ready("sentiment-bilstm", "1")  # failed to load: a plain no
    assert status_of(lambda: ready("sentiment-lstm", "7"))[0] == grpc.StatusCode.NOT_FOUND


def test_methods_seqserve_does_not_serve_are_unimplemented(channel):
    index = channel.unary_unary("/inference.GRPCInferenceService/RepositoryIndex")
    assert status_of(lambda: index(b"", timeout=5))[0] == grpc.StatusCode.UNIMPLEMENTED


def test_model_infer_is_measured_per_task_and_architecture_and_batched_with_others(stub, server):
    # Sent together from one thread (futures), so they reach the server within the batch wait.
    pending = [stub.ModelInfer.future(tensor_request("sentiment-rnn", [ids("a great film")]), timeout=10)
               for _ in range(16)]
    replies = [f.result() for f in pending]
    stub.ServerReady(pb.ServerReadyRequest())
    assert all(outputs_of(r)["label"].tolist() == [b"positive"] for r in replies)
    metrics = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()

    def value(series: str) -> float:
        match = re.search(re.escape(series) + r" ([0-9.e+]+)", metrics)
        assert match, f"{series} missing from /metrics"
        return float(match.group(1))

    assert value('seqserve_requests_total{arch="rnn",code="OK",method="ModelInfer",task="sentiment"}') == 16
    assert value('seqserve_request_duration_seconds_count{arch="rnn",method="ModelInfer",task="sentiment"}') == 16
    assert value('seqserve_queue_duration_seconds_count{arch="rnn",task="sentiment"}') == 16
    # 16 concurrent rows took fewer ORT runs than rows: they shared the batcher.
    assert value('seqserve_batch_size_count{arch="rnn",task="sentiment"}') < 16
    assert value('seqserve_requests_total{arch="",code="OK",method="ServerReady",task="kserve"}') >= 1


def test_server_ready_and_model_ready_follow_health_through_a_graceful_stop(tmp_path):
    write_fake_sentiment(tmp_path / "models", "lstm")
    server = ServerProcess(tmp_path / "models", tmp_path / "server.log", drain_delay_s="5").start()
    try:
        with grpc.insecure_channel(server.target) as ch:
            stub = Stub(ch)
            assert stub.ServerReady(pb.ServerReadyRequest()).ready
            server.signal(signal.SIGTERM)
            deadline = time.monotonic() + 4
            while stub.ServerReady(pb.ServerReadyRequest(), timeout=2).ready:
                assert time.monotonic() < deadline, "ServerReady stayed true after SIGTERM"
                time.sleep(0.05)
            # Draining: not ready, still live, and a request under way is still answered.
            assert not stub.ModelReady(pb.ModelReadyRequest(name="sentiment-lstm"), timeout=2).ready
            assert stub.ServerLive(pb.ServerLiveRequest(), timeout=2).live
            assert stub.ModelInfer(tensor_request("sentiment-lstm", [[2]]), timeout=2).outputs
    finally:
        assert server.stop() == 0


def test_without_models_the_server_is_not_ready_and_infer_is_unavailable(tmp_path):
    from grpc_health.v1 import health_pb2

    (tmp_path / "models").mkdir()
    server = ServerProcess(tmp_path / "models", tmp_path / "server.log").start(expect_serving=False)
    try:
        server.wait_for_health(health_pb2.HealthCheckResponse.NOT_SERVING, timeout=30)
        with grpc.insecure_channel(server.target) as ch:
            stub = Stub(ch)
            assert stub.ServerLive(pb.ServerLiveRequest(), timeout=5).live
            assert not stub.ServerReady(pb.ServerReadyRequest(), timeout=5).ready
            assert not stub.ModelReady(pb.ModelReadyRequest(name="sentiment"), timeout=5).ready
            code, details = status_of(lambda: stub.ModelInfer(tensor_request("sentiment", [[2]]), timeout=5))
            assert (code, details) == (grpc.StatusCode.UNAVAILABLE, "no model is loaded")
    finally:
        server.stop()
