"""Sentiment against a real server on loopback, with the trained quick models."""

from __future__ import annotations

import re
import time
import urllib.request

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from seqserve.manifest import ARCHS
from seqserve.v1 import common_pb2, models_pb2, models_pb2_grpc, sentiment_pb2, sentiment_pb2_grpc

TEXTS = [
    "a gripping, funny film",
    "the plot is a mess and the acting is worse .",
    "an utterly forgettable , tedious two hours that never finds its footing",
    "wonderful",
    "it's a charming and often affecting journey .",
]


def classify(channel: grpc.Channel, text: str, arch: str = "", version: int = 0) -> sentiment_pb2.ClassifyResponse:
    stub = sentiment_pb2_grpc.SentimentStub(channel)
    return stub.Classify(
        sentiment_pb2.ClassifyRequest(text=text, model=common_pb2.ModelSelector(arch=arch, version=version)),
        timeout=10,
    )


def batch(channel: grpc.Channel, texts: list[str], arch: str = "") -> sentiment_pb2.ClassifyBatchResponse:
    stub = sentiment_pb2_grpc.SentimentStub(channel)
    return stub.ClassifyBatch(
        sentiment_pb2.ClassifyBatchRequest(texts=texts, model=common_pb2.ModelSelector(arch=arch)), timeout=10
    )


def status_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_answers_with_a_label_and_probabilities(channel, arch):
    reply = classify(channel, "a gripping, funny film", arch)
    probs = {p.label: p.probability for p in reply.result.probabilities}
    assert set(probs) == {"negative", "positive"}
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert reply.result.label == max(probs, key=probs.get)
    assert (reply.model.task, reply.model.arch) == ("sentiment", arch)
    assert reply.model.version >= 1


def test_models_lists_all_five_ready_with_quality_and_one_default(channel):
    reply = models_pb2_grpc.ModelsStub(channel).ListModels(models_pb2.ListModelsRequest(task="sentiment"))
    ready = {m.id.arch: m for m in reply.models if m.ready}
    assert set(ready) == set(ARCHS)
    for m in ready.values():
        assert 0.5 < m.quality["test_accuracy"] <= 1.0
        assert m.parameters > 0 and list(m.labels) == ["negative", "positive"]
    defaults = [m for m in reply.models if m.is_default]
    assert len(defaults) == 1
    assert classify(channel, "fine").model.arch == defaults[0].id.arch


@pytest.mark.parametrize("arch", ARCHS)
def test_a_batch_equals_its_singles(channel, arch):
    together = batch(channel, TEXTS, arch).results
    for text, result in zip(TEXTS, together, strict=True):
        alone = classify(channel, text, arch).result
        assert alone.label == result.label
        for a, b in zip(alone.probabilities, result.probabilities, strict=True):
            assert a.label == b.label and a.probability == pytest.approx(b.probability, abs=1e-5)


def test_bad_input_gets_invalid_argument_with_a_reason(channel):
    cases = [
        (lambda: classify(channel, ""), "empty"),
        (lambda: classify(channel, " \t\n "), "empty"),
        (lambda: classify(channel, "word " * 1000), "limit"),
        (lambda: batch(channel, []), "empty"),
        (lambda: batch(channel, ["fine"] * 65), "limit is 64"),
        (lambda: batch(channel, ["fine", ""]), r"texts\[1\] is empty"),
    ]
    for call, reason in cases:
        code, details = status_of(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert re.search(reason, details), details
    assert classify(channel, "still serving").result.label


def test_unknown_architecture_or_version_is_not_found_naming_what_exists(channel):
    code, details = status_of(lambda: classify(channel, "fine", "cnn"))
    assert code == grpc.StatusCode.NOT_FOUND
    assert "'cnn'" in details and all(a in details for a in ARCHS)
    code, details = status_of(lambda: classify(channel, "fine", "lstm", 999))
    assert code == grpc.StatusCode.NOT_FOUND
    assert "version 999" in details and "available: " in details


def test_odd_but_valid_text_is_classified(channel):
    for text in ["ÉMOUVANT ! 😀", "日本語のテキスト", "x" * 1999, "\u0000control\u0007chars", "<b>html</b>"]:
        assert classify(channel, text).result.label in {"negative", "positive"}


def test_reflection_lists_every_service(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    reply = next(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in reply.list_services_response.service}
    assert {"seqserve.v1.Sentiment", "seqserve.v1.Models", "grpc.health.v1.Health"} <= names


def test_metrics_carry_task_architecture_method_and_code(channel, server):
    classify(channel, "a gripping, funny film", "gru")
    status_of(lambda: classify(channel, "", "gru"))
    expected = [
        r'seqserve_request_duration_seconds_count\{arch="gru",method="Classify",task="sentiment"\} [1-9]',
        r'seqserve_requests_total\{arch="gru",code="INVALID_ARGUMENT",method="Classify",task="sentiment"\} [1-9]',
        r'seqserve_inference_duration_seconds_count\{arch="gru",task="sentiment"\} [1-9]',
        r'seqserve_queue_duration_seconds_count\{arch="gru",task="sentiment"\} [1-9]',
        r'seqserve_model_info\{arch="gru",default="\w+",ready="true",task="sentiment",version="\d+"\} 1',
    ]
    # grpc.aio sends an error status from inside abort(), so a client can read
    # /metrics a moment before the server has counted that call: poll, as a scraper would.
    deadline = time.monotonic() + 15
    while True:
        text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
        missing = [pattern for pattern in expected if not re.search(pattern, text)]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not missing, missing
