"""NVIDIA's Python client (PyPI ``tritonclient[grpc]``), unchanged, against a real
server: the Open Inference Protocol works for clients no one here wrote.

tritonclient pins protobuf<7 and the project needs 7, so it runs in its own
virtual environment (scripts/install-client-tools.sh) as a subprocess,
tests/clients/triton_calls.py, which reports what the client saw.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from seqserve.manifest import ARCHS, Manifest, read_vocab
from seqserve.text import tokenize
from seqserve.v1 import common_pb2, sentiment_pb2, sentiment_pb2_grpc
from tests.client_tools import triton_calls, triton_python
from tests.fakes import VOCAB, write_fake_sentiment
from tests.servers import ServerProcess

TEXTS = ["a good great film", "awful , bad", "film"]


def encode(text: str, vocab: list[str], manifest: Manifest) -> list[int]:
    """Token ids as a client that tokenizes for itself computes them."""
    index = {token: i for i, token in enumerate(vocab)}
    unk = manifest.special_tokens["unk"]
    return [index.get(t, unk) for t in tokenize(text, lowercase=bool(manifest.tokenizer.get("lowercase", True)))]


def padded(rows: list[list[int]]) -> tuple[list[list[int]], list[int]]:
    width = max(len(r) for r in rows)
    return [r + [0] * (width - len(r)) for r in rows], [len(r) for r in rows]


def typed_probabilities(channel: grpc.Channel, text: str, arch: str) -> list[float]:
    """What the typed API answers, in label order."""
    reply = sentiment_pb2_grpc.SentimentStub(channel).Classify(
        sentiment_pb2.ClassifyRequest(text=text, model=common_pb2.ModelSelector(arch=arch)), timeout=10
    )
    return [p.probability for p in reply.result.probabilities]


@pytest.fixture(scope="session", autouse=True)
def tritonclient_installed() -> None:
    """Checked before any server starts or any model trains for nothing."""
    triton_python()


@pytest.fixture(scope="module")
def fake_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("triton")
    for version in (1, 2):
        write_fake_sentiment(tmp / "models", "lstm", version, accuracy=0.8)
    write_fake_sentiment(tmp / "models", "gru", accuracy=0.6)
    with ServerProcess(tmp / "models", tmp / "server.log") as proc:
        yield proc


def test_tritonclient_calls_a_sentiment_model_with_tensors_and_with_text(fake_server):
    manifest = Manifest.load(Path(fake_server.env["SEQSERVE_MODEL_REPOSITORY"], "sentiment", "gru", "1"))
    tokens, lengths = padded([encode(t, VOCAB, manifest) for t in TEXTS])
    report = triton_calls(fake_server.target, [
        {"model": "sentiment-gru", "tokens": tokens, "lengths": lengths},
        {"model": "sentiment-gru", "version": "1", "text": TEXTS},
        {"model": "sentiment", "text": ["great"], "outputs": ["label"]},
    ])
    assert report["live"] is True and report["ready"] is True
    assert report["server"]["name"] == "seqserve"

    with grpc.insecure_channel(fake_server.target) as channel:
        expected = [typed_probabilities(channel, t, "gru") for t in TEXTS]
    for call in report["calls"][:2]:
        assert call["ready"] is True
        meta = call["metadata"]
        assert meta["name"] == "sentiment-gru" and meta["versions"] == ["1"]
        assert [(t["name"], t["datatype"]) for t in meta["inputs"]] == [("tokens", "INT64"), ("lengths", "INT64")]
        infer = call["infer"]
        assert (infer["model_name"], infer["model_version"]) == ("sentiment-gru", "1")
        assert infer["id"].startswith("call-")
        for got, want in zip(infer["outputs"]["probabilities"], expected, strict=True):
            assert got == pytest.approx(want, abs=1e-6)
        assert infer["outputs"]["label"] == ["positive", "negative", "positive" if expected[2][1] > 0.5 else "negative"]
        assert infer["outputs"]["logits"][0] == [0.0, 5.0]

    default = report["calls"][2]["infer"]
    assert default["model_name"] == "sentiment-lstm" and default["model_version"] == "2"
    assert default["outputs"] == {"label": ["positive"]}


def test_tritonclient_sees_the_servers_refusals_as_statuses(fake_server):
    report = triton_calls(fake_server.target, [
        {"model": "sentiment-cnn", "text": ["good"]},
        {"model": "sentiment-lstm", "version": "9", "text": ["good"]},
        {"model": "sentiment-lstm", "tokens": [[2, 99]], "lengths": [2]},
        {"model": "sentiment-lstm", "tokens": [[2, 3]], "lengths": [3]},
        {"model": "sentiment-lstm", "text": [""]},
    ])
    errors = [call["infer"]["error"] for call in report["calls"]]
    assert [e["status"] for e in errors] == ["StatusCode.NOT_FOUND"] * 2 + ["StatusCode.INVALID_ARGUMENT"] * 3
    assert "models: sentiment, sentiment-gru, sentiment-lstm" in errors[0]["message"]
    assert "versions: 1, 2" in errors[1]["message"]
    assert "token id 99" in errors[2]["message"]
    assert "lengths[0] is 3" in errors[3]["message"]
    assert "empty" in errors[4]["message"]
    assert report["calls"][0]["ready"]["error"]["status"] == "StatusCode.NOT_FOUND"


def test_tritonclient_with_every_trained_architecture(server, channel, model_repository):
    """One tensor call and one text call per real architecture, each equal to the typed API's answer."""
    calls, expected = [], {}
    for arch in ARCHS:
        version_dir = max(
            (p.parent for p in Path(model_repository, "sentiment", arch).glob("*/manifest.json")),
            key=lambda p: int(p.name),
        )
        manifest = Manifest.load(version_dir)
        vocab = read_vocab(version_dir / manifest.files["vocab"])
        tokens, lengths = padded([encode(t, vocab, manifest) for t in TEXTS])
        calls += [
            {"model": f"sentiment-{arch}", "tokens": tokens, "lengths": lengths},
            {"model": f"sentiment-{arch}", "text": TEXTS},
        ]
        expected[arch] = (str(manifest.version), [typed_probabilities(channel, t, arch) for t in TEXTS])
    report = triton_calls(server.target, calls)
    for call, request in zip(report["calls"], calls, strict=True):
        arch = request["model"].removeprefix("sentiment-")
        version, probabilities = expected[arch]
        assert call["ready"] is True, arch
        infer = call["infer"]
        assert (infer["model_name"], infer["model_version"]) == (request["model"], version)
        for got, want in zip(infer["outputs"]["probabilities"], probabilities, strict=True):
            assert got == pytest.approx(want, abs=1e-5), arch
