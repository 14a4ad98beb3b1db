"""Fuzzing every RPC of a real server with hypothesis: empty, huge, control characters,
mixed scripts, invalid options, streams in the wrong order and messages after their end.

The server must answer only documented statuses (never INTERNAL or UNKNOWN), and keep
answering a health check and a valid request after every case. CI runs a few hundred
cases; ``SEQSERVE_FUZZ_EXAMPLES=2000`` (per RPC family, six families) is the long run
the README reports.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqserve.kserve import grpc_predict_v2_pb2 as kserve_pb2
from seqserve.kserve import grpc_predict_v2_pb2_grpc as kserve_grpc
from seqserve.manifest import ARCHS
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
from tests.servers import ServerProcess

EXAMPLES = int(os.environ.get("SEQSERVE_FUZZ_EXAMPLES", "60"))
DOCUMENTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("SEQSERVE_FUZZ_RANDOM"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def fuzzed(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # Small decode limits keep a fuzzed translation cheap; the strategies still go past them.
    log = tmp_path_factory.mktemp("fuzz") / "server.log"
    with ServerProcess(model_repository, log, max_beam_size="4", max_output_tokens="40", max_streams="8",
                       max_stream_tokens="300") as proc:
        yield proc


@pytest.fixture(scope="module")
def ch(fuzzed: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(fuzzed.target) as channel:
        yield channel


# ----------------------------------------------------------------------------- strategies

# Every Unicode category but lone surrogates (protobuf strings must be valid UTF-8).
chars = st.characters(exclude_categories=("Cs",))
small_text = st.text(chars, max_size=40)
odd_text = st.one_of(
    small_text,
    st.sampled_from(["", " ", "\n\t ", "\x00", "\x07\x1b[31m", "‮reversed", "北京 Москва العربية 🙂", "a" * 2001]),
    st.builds(lambda c, n: c * n, chars, st.integers(0, 2600)),  # long runs, over and under the limits
    st.builds(lambda ws: " ".join(ws), st.lists(st.sampled_from(["the", "God", "light", "earth", "jury"]),
                                                max_size=320)),
)
arch = st.one_of(st.sampled_from(["", *ARCHS]), small_text, st.sampled_from(["../../etc", "LSTM", "lstm "]))
version = st.one_of(st.just(0), st.integers(-2**63, 2**63 - 1))
selector = st.builds(common_pb2.ModelSelector, arch=arch, version=version)


def check(call) -> grpc.StatusCode:
    try:
        call()
        return grpc.StatusCode.OK
    except grpc.RpcError as exc:
        code = exc.code()
        assert code in DOCUMENTED, f"{code.name}: {exc.details()}"
        assert exc.details(), f"{code.name} without a message"
        return code


def still_serving(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    reply = sentiment_pb2_grpc.SentimentStub(channel).Classify(sentiment_pb2.ClassifyRequest(text="good"), timeout=10)
    assert reply.result.label


# ----------------------------------------------------------------------------- the families


@FUZZ
@given(text=odd_text, texts=st.lists(odd_text, max_size=70), model=selector)
def test_sentiment(ch, text, texts, model):
    stub = sentiment_pb2_grpc.SentimentStub(ch)
    check(lambda: stub.Classify(sentiment_pb2.ClassifyRequest(text=text, model=model), timeout=30))
    check(lambda: stub.ClassifyBatch(sentiment_pb2.ClassifyBatchRequest(texts=texts, model=model), timeout=30))
    still_serving(ch)


sentence = st.one_of(
    st.builds(lambda t: tagging_pb2.Sentence(text=t), odd_text),
    st.builds(lambda ts: tagging_pb2.Sentence(tokens=tagging_pb2.Tokens(tokens=ts)), st.lists(small_text, max_size=30)),
    st.just(tagging_pb2.Sentence()),
)
stream_message = st.one_of(
    st.builds(lambda m: tagging_pb2.TagStreamRequest(model=m), selector),
    st.builds(lambda ts: tagging_pb2.TagStreamRequest(tokens=tagging_pb2.Tokens(tokens=ts)),
              st.lists(small_text, max_size=20)),
    st.builds(lambda t: tagging_pb2.TagStreamRequest(text=t), odd_text),
    st.just(tagging_pb2.TagStreamRequest(flush=tagging_pb2.Flush())),
    st.just(tagging_pb2.TagStreamRequest()),
)


@FUZZ
@given(sentences=st.lists(sentence, max_size=8), model=selector, messages=st.lists(stream_message, max_size=10))
def test_tagging(ch, sentences, model, messages):
    stub = tagging_pb2_grpc.TaggingStub(ch)
    check(lambda: stub.Tag(tagging_pb2.TagRequest(sentences=sentences, model=model), timeout=30))
    check(lambda: list(stub.TagStream(iter(messages), timeout=30)))
    still_serving(ch)


@FUZZ
@given(text=odd_text, model=selector, beam=st.integers(0, 40), max_length=st.integers(0, 2000),
       n_best=st.integers(0, 20), streamed=st.booleans())
def test_translation(ch, text, model, beam, max_length, n_best, streamed):
    stub = translation_pb2_grpc.TranslationStub(ch)
    request = translation_pb2.TranslateRequest(text=text, model=model, beam_size=beam, max_length=max_length,
                                               n_best=n_best)
    if streamed:
        check(lambda: list(stub.TranslateStream(request, timeout=60)))
    else:
        check(lambda: stub.Translate(request, timeout=60))
    still_serving(ch)


datatype = st.one_of(st.sampled_from(["BYTES", "INT64", "FP32", "INT32", "FP16", "BOOL"]), small_text)
shape = st.lists(st.integers(-3, 2**40), max_size=4)
tensor = st.builds(
    lambda name, dt, shp, words, ints: kserve_pb2.ModelInferRequest.InferInputTensor(
        name=name, datatype=dt, shape=shp,
        contents=kserve_pb2.InferTensorContents(bytes_contents=[w.encode() for w in words], int64_contents=ints),
    ),
    st.sampled_from(["text", "tokens", "lengths", "other", ""]), datatype, shape,
    st.lists(odd_text, max_size=4), st.lists(st.integers(-2**63, 2**63 - 1), max_size=8),
)
raw = st.lists(st.one_of(st.binary(max_size=64), st.builds(lambda n: struct.pack("<I", n), st.integers(0, 2**32 - 1))),
               max_size=3)
model_name = st.one_of(st.sampled_from(["sentiment", "sentiment-lstm", "sentiment-gru", "tagging-lstm", ""]),
                       small_text)


@FUZZ
@given(name=model_name, version=st.one_of(st.just(""), small_text), inputs=st.lists(tensor, max_size=3),
       raw_contents=raw, outputs=st.lists(st.sampled_from(["label", "logits", "probabilities", "x"]), max_size=3))
def test_open_inference(ch, name, version, inputs, raw_contents, outputs):
    stub = kserve_grpc.GRPCInferenceServiceStub(ch)
    request = kserve_pb2.ModelInferRequest(
        model_name=name, model_version=version, inputs=inputs, raw_input_contents=raw_contents,
        outputs=[kserve_pb2.ModelInferRequest.InferRequestedOutputTensor(name=o) for o in outputs],
    )
    check(lambda: stub.ModelInfer(request, timeout=30))
    check(lambda: stub.ModelMetadata(kserve_pb2.ModelMetadataRequest(name=name, version=version), timeout=30))
    check(lambda: stub.ModelReady(kserve_pb2.ModelReadyRequest(name=name, version=version), timeout=30))
    still_serving(ch)


@FUZZ
@given(task=st.one_of(st.sampled_from(["", "sentiment", "tagging", "translation"]), small_text),
       service=st.one_of(st.just(""), small_text))
def test_models_and_health(ch, task, service):
    check(lambda: models_pb2_grpc.ModelsStub(ch).ListModels(models_pb2.ListModelsRequest(task=task), timeout=30))
    health = health_pb2_grpc.HealthStub(ch)
    try:
        health.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)
    except grpc.RpcError as exc:  # grpc's own health service: an unknown service name is NOT_FOUND
        assert exc.code() == grpc.StatusCode.NOT_FOUND
    still_serving(ch)


@FUZZ
@given(frames=st.lists(st.binary(max_size=200), max_size=4),
       method=st.sampled_from([
           "/seqserve.v1.Sentiment/Classify", "/seqserve.v1.Tagging/TagStream", "/seqserve.v1.Translation/Translate",
           "/inference.GRPCInferenceService/ModelInfer", "/seqserve.v1.Models/ListModels",
       ]))
def test_bytes_that_are_not_the_message(ch, frames, method):
    """Raw bytes where a protobuf should be: INVALID_ARGUMENT naming the message, and nothing else changes."""
    identity = lambda b: b  # noqa: E731
    if method.endswith("TagStream"):
        call = ch.stream_stream(method, request_serializer=identity, response_deserializer=identity)
        outcome = lambda: list(call(iter(frames), timeout=30))  # noqa: E731
    else:
        call = ch.unary_unary(method, request_serializer=identity, response_deserializer=identity)
        outcome = lambda: call(frames[0] if frames else b"", timeout=30)  # noqa: E731
    check(outcome)
    still_serving(ch)


def test_the_server_is_alive_and_logged_no_crash(fuzzed: ServerProcess):
    assert fuzzed.proc is not None and fuzzed.proc.poll() is None
    assert "Traceback" not in fuzzed.logs()


def test_bytes_that_are_not_a_request_are_invalid_argument_naming_the_message(ch):
    call = ch.unary_unary("/seqserve.v1.Sentiment/Classify", request_serializer=bytes, response_deserializer=bytes)
    with pytest.raises(grpc.RpcError) as info:
        call(b"\x00", timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid seqserve.v1.ClassifyRequest" in info.value.details()
