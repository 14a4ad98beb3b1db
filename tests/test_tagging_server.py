"""Tagging against a real server: unary Tag, TagStream for causal and lookahead models, limits, metrics."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqserve.kserve import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc
from seqserve.manifest import ARCHS
from seqserve.v1 import common_pb2, tagging_pb2, tagging_pb2_grpc
from tests.servers import ROOT, ServerProcess, error_of, metric, scrape, wait_for_metric

CAUSAL = ("rnn", "lstm", "gru")
LOOKAHEAD = ("bilstm", "transformer")
UNIVERSAL = {"ADJ", "ADP", "ADV", "CONJ", "DET", "NOUN", "NUM", "PRON", "PRT", "VERB", ".", "X"}
# Held-out-style sentences, with the things streams bring: punctuation glued to words,
# contractions, numbers, capitals, words no vocabulary has.
SENTENCES = [
    "The jury said it did find that many of Atlanta's registration practices were handled well.",
    "She didn't expect 3,000 people -- or the Zorblatt quintuplets -- to arrive by noon!",
    "Mr. Hawksley quickly reorganized the unflappable committee in 1961.",
    "Why would anyone grumbelize a perfectly good sentence?",
]


def stub(channel: grpc.Channel) -> tagging_pb2_grpc.TaggingStub:
    return tagging_pb2_grpc.TaggingStub(channel)


def tag(channel: grpc.Channel, sentences: list[str | list[str]], arch: str = "") -> tagging_pb2.TagResponse:
    request = tagging_pb2.TagRequest(
        sentences=[
            tagging_pb2.Sentence(text=s) if isinstance(s, str) else tagging_pb2.Sentence(tokens={"tokens": s})
            for s in sentences
        ],
        model=common_pb2.ModelSelector(arch=arch),
    )
    return stub(channel).Tag(request, timeout=30)


def triples(tokens) -> list[tuple[int, str, str]]:
    return [(t.index, t.token, t.tag) for t in tokens]


class Stream:
    """One TagStream driven message by message from the test."""

    def __init__(self, channel: grpc.Channel, arch: str | None = "", timeout: float = 60) -> None:
        self._requests: queue.Queue[tagging_pb2.TagStreamRequest | None] = queue.Queue()
        if arch is not None:
            self.send(model=common_pb2.ModelSelector(arch=arch))
        self.call = stub(channel).TagStream(iter(self._requests.get, None), timeout=timeout)

    def send(self, **fields) -> None:
        self._requests.put(tagging_pb2.TagStreamRequest(**fields))

    def words(self, *words: str) -> None:
        self.send(tokens=tagging_pb2.Tokens(tokens=list(words)))

    def recv(self) -> tagging_pb2.TagStreamResponse:
        return next(self.call)

    def close(self) -> list[tagging_pb2.TagStreamResponse]:
        """End our side; the rest of the answers."""
        self._requests.put(None)
        return list(self.call)

    def started(self) -> tagging_pb2.StreamStarted:
        reply = self.recv()
        assert reply.HasField("started")
        return reply.started


def stream_chunks(channel: grpc.Channel, arch: str, chunks: list[str]) -> list[tagging_pb2.TaggedToken]:
    s = Stream(channel, arch)
    for chunk in chunks:
        s.send(text=chunk)
    replies = s.close()
    assert replies[0].HasField("started")
    return [t for r in replies[1:] for t in r.tags.tokens]


# ----------------------------------------------------------------------------- unary


@pytest.mark.parametrize("arch", ARCHS)
def test_tag_answers_every_token_with_a_universal_tag(channel, arch):
    reply = tag(channel, ["The jury said it."], arch)
    assert reply.model.task == "tagging" and reply.model.arch == arch and reply.model.version >= 1
    (sentence,) = reply.sentences
    assert [(t.index, t.token) for t in sentence.tokens] == [(0, "The"), (1, "jury"), (2, "said"), (3, "it"), (4, ".")]
    assert all(t.tag in UNIVERSAL and 0 < t.probability <= 1 for t in sentence.tokens)
    assert [t.tag for t in sentence.tokens] == ["DET", "NOUN", "VERB", "PRON", "."]


@pytest.mark.parametrize("arch", ["gru", "transformer"])
def test_a_batch_equals_its_singles_whatever_the_padding(channel, arch):
    together = tag(channel, SENTENCES, arch).sentences
    for text, batched in zip(SENTENCES, together):
        (alone,) = tag(channel, [text], arch).sentences
        assert triples(batched.tokens) == triples(alone.tokens)
        assert [t.probability for t in batched.tokens] == pytest.approx([t.probability for t in alone.tokens], abs=1e-5)


def test_tokens_are_taken_as_given(channel):
    (sentence,) = tag(channel, [["New", "York-based", "firms", "hire"]], "lstm").sentences
    assert [t.token for t in sentence.tokens] == ["New", "York-based", "firms", "hire"]


def test_unary_bad_input_is_invalid_argument_with_a_reason(channel):
    cases = {
        "sentences is empty": lambda: tag(channel, []),
        "needs text or tokens": lambda: stub(channel).Tag(tagging_pb2.TagRequest(sentences=[tagging_pb2.Sentence()])),
        "empty: send at least one word": lambda: tag(channel, ["   "]),
        "empty token": lambda: tag(channel, [["a", ""]]),
        "the limit is 256": lambda: tag(channel, [" ".join(["word"] * 300)]),
    }
    for reason, call in cases.items():
        code, details = error_of(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (reason, details)
        assert reason in details
    code, details = error_of(lambda: tag(channel, ["x"], "gpt"))
    assert code == grpc.StatusCode.NOT_FOUND and "available: " in details


# ----------------------------------------------------------------------------- streams


@pytest.mark.parametrize("arch", CAUSAL)
def test_causal_streams_start_immediate_and_tag_each_token_at_once(channel, arch):
    s = Stream(channel, arch)
    started = s.started()
    assert started.mode == tagging_pb2.StreamStarted.IMMEDIATE and started.model.arch == arch
    words = ["The", "jury", "said", "it", "."]
    for i, word in enumerate(words):
        s.words(word)
        reply = s.recv()  # answered before the next word is sent: no delay
        assert [(t.index, t.token) for t in reply.tags.tokens] == [(i, word)]
    assert s.close() == []


@pytest.mark.parametrize("arch", CAUSAL)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_causal_streaming_in_any_chunking_equals_tagging_the_whole_text(channel, arch, data):
    text = " ".join(data.draw(st.lists(st.sampled_from(SENTENCES), min_size=1, max_size=3)))
    cuts = sorted(data.draw(st.sets(st.integers(1, len(text) - 1), max_size=12)))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    streamed = stream_chunks(channel, arch, chunks)
    (whole,) = tag(channel, [text], arch).sentences
    assert triples(streamed) == triples(whole.tokens)
    assert [t.probability for t in streamed] == pytest.approx([t.probability for t in whole.tokens], abs=1e-4)


@pytest.mark.parametrize("arch", LOOKAHEAD)
def test_lookahead_streams_say_how_long_they_wait_and_keep_to_it(channel, arch):
    s = Stream(channel, arch)
    started = s.started()
    k = started.lookahead
    assert started.mode == tagging_pb2.StreamStarted.LOOKAHEAD and 1 <= k <= 8
    words = SENTENCES[0].replace(".", " .").split()
    for word in words:
        s.words(word)
    replies = s.close()
    # One message per word: token i is answered by the message that brought word i + k,
    # the last k at the end of the input.
    sizes = [len(r.tags.tokens) for r in replies]
    assert sizes == [1] * (len(words) - k) + [k]
    tagged = [t for r in replies for t in r.tags.tokens]
    assert [(t.index, t.token) for t in tagged] == list(enumerate(words))


@pytest.mark.parametrize("arch", LOOKAHEAD)
def test_a_flush_tags_what_waits_and_a_flushed_sentence_equals_unary(channel, arch):
    s = Stream(channel, arch)
    s.started()
    (whole,) = tag(channel, [SENTENCES[2]], arch).sentences
    s.send(text=SENTENCES[2] + " ")
    s.send(flush=tagging_pb2.Flush())
    tagged = [t for r in (s.recv(), s.recv()) for t in r.tags.tokens]
    assert triples(tagged) == triples(whole.tokens)
    s.words("Then")
    assert s.close()[-1].tags.tokens[0].index == len(whole.tokens)


def test_concurrent_streams_never_see_each_others_state(channel):
    # Two streams on one model, strictly interleaved word by word, then many in threads.
    texts = [SENTENCES[0], SENTENCES[3]]
    wanted = [triples(s.tokens) for s in tag(channel, texts, "lstm").sentences]
    a, b = Stream(channel, "lstm"), Stream(channel, "lstm")
    a.started(), b.started()
    got: list[list] = [[], []]
    words = [[t for _, t, _ in w] for w in wanted]
    for i in range(max(map(len, words))):
        for j, s in enumerate((a, b)):
            if i < len(words[j]):
                s.words(words[j][i])
                got[j] += triples(s.recv().tags.tokens)
    a.close(), b.close()
    assert got == wanted

    results: dict[int, list] = {}

    def run(i: int) -> None:
        text = SENTENCES[i % len(SENTENCES)]
        results[i] = triples(stream_chunks(channel, "gru", [text[j : j + 3] for j in range(0, len(text), 3)]))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    alone = [triples(s.tokens) for s in tag(channel, SENTENCES, "gru").sentences]
    assert [results[i] for i in range(8)] == [alone[i % len(SENTENCES)] for i in range(8)]


def test_stream_bad_input_ends_only_that_stream(channel):
    healthy = Stream(channel, "gru")
    healthy.started()
    cases = {
        "empty stream message": [tagging_pb2.TagStreamRequest()],
        "only be chosen in a stream's first message": [
            tagging_pb2.TagStreamRequest(tokens=tagging_pb2.Tokens(tokens=["a"])),
            tagging_pb2.TagStreamRequest(model=common_pb2.ModelSelector(arch="gru")),
        ],
        "non-empty words": [tagging_pb2.TagStreamRequest(tokens=tagging_pb2.Tokens(tokens=["a", ""]))],
        "without white space": [tagging_pb2.TagStreamRequest(text="x" * 2001)],
    }
    for reason, messages in cases.items():
        code, details = error_of(lambda: list(stub(channel).TagStream(iter(messages), timeout=30)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (reason, details)
        assert reason in details
        healthy.words("still")
        assert healthy.recv().tags.tokens[0].token == "still"
    code, details = error_of(
        lambda: list(stub(channel).TagStream(iter([tagging_pb2.TagStreamRequest(model={"arch": "gpt"})]), timeout=30))
    )
    assert code == grpc.StatusCode.NOT_FOUND and "available: " in details
    healthy.close()


def test_stream_metrics_per_architecture(channel, server):
    before = metric(scrape(server), "seqserve_stream_tokens_total", arch="rnn")
    stream_chunks(channel, "rnn", ["The jury ", "said it."])
    assert wait_for_metric(server, "seqserve_stream_tokens_total", before + 5, arch="rnn") == before + 5
    text = scrape(server)
    assert metric(text, "seqserve_token_latency_seconds_count", task="tagging", arch="rnn") >= 5
    assert metric(text, "seqserve_streams_ended_total", arch="rnn", reason="completed") >= 1
    assert metric(text, "seqserve_requests_total", task="tagging", arch="rnn", method="TagStream", code="OK") >= 1


# ----------------------------------------------------------------------------- lifecycle and limits


@pytest.fixture(scope="module")
def limited(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("limited") / "server.log"
    with ServerProcess(model_repository, log, tasks='["tagging"]', max_streams="3", max_stream_tokens="20") as proc:
        yield proc


@pytest.fixture(scope="module")
def idling(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("idling") / "server.log"
    with ServerProcess(model_repository, log, tasks='["tagging"]', stream_idle_timeout_s="1.5") as proc:
        yield proc


def active(server: ServerProcess) -> float:
    return metric(scrape(server), "seqserve_active_streams", task="tagging")


def wait_active(server: ServerProcess, n: float, timeout: float = 20) -> float:
    deadline = time.monotonic() + timeout
    while active(server) != n and time.monotonic() < deadline:
        time.sleep(0.05)
    return active(server)


def ended(server: ServerProcess, reason: str) -> float:
    return metric(scrape(server), "seqserve_streams_ended_total", task="tagging", reason=reason)


def open_stream_holding_state(channel: grpc.Channel, server: ServerProcess) -> Stream:
    s = Stream(channel, "lstm")
    s.started()
    s.words("The", "jury")
    s.recv()
    assert wait_active(server, 1) == 1
    return s


def ended_any(server: ServerProcess) -> float:
    return metric(scrape(server), "seqserve_streams_ended_total", task="tagging")


def test_state_is_freed_when_a_stream_ends(limited):
    with grpc.insecure_channel(limited.target) as channel:
        before = ended(limited, "completed")
        s = open_stream_holding_state(channel, limited)
        assert s.close() == []
        assert wait_for_metric(limited, "seqserve_streams_ended_total", before + 1, reason="completed") == before + 1
        assert wait_active(limited, 0) == 0


def test_state_is_freed_when_a_stream_is_cancelled(limited):
    with grpc.insecure_channel(limited.target) as channel:
        before = ended_any(limited)
        s = open_stream_holding_state(channel, limited)
        s.call.cancel()
        # Counted as "cancelled" when grpc delivers the cancel before the server has
        # finished the stream, else as "completed": either way the state is gone.
        assert wait_for_metric(limited, "seqserve_streams_ended_total", before + 1, task="tagging") == before + 1
        assert wait_active(limited, 0) == 0


def test_state_is_freed_when_a_stream_stays_idle(idling):
    with grpc.insecure_channel(idling.target) as channel:
        s = open_stream_holding_state(channel, idling)
        code, details = error_of(s.recv)  # no message for 1.5 s
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED and "state freed" in details
        assert wait_for_metric(idling, "seqserve_streams_ended_total", 1, reason="idle_timeout") == 1
        assert wait_active(idling, 0) == 0


def test_streams_and_tokens_per_stream_are_bounded(limited):
    with grpc.insecure_channel(limited.target) as channel:
        assert wait_active(limited, 0) == 0
        streams = [Stream(channel, "gru") for _ in range(3)]
        for s in streams:
            s.started()
        code, details = error_of(Stream(channel, "gru").recv)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit" in details
        streams[0].words("Room")  # the open ones are unaffected
        assert streams[0].recv().tags.tokens[0].token == "Room"
        for s in streams:
            s.close()
        assert wait_active(limited, 0) == 0

        s = Stream(channel, "gru")
        s.started()
        s.words(*["word"] * 20)
        assert len(s.recv().tags.tokens) == 20
        s.words("one-too-many")
        code, details = error_of(s.recv)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "20 tokens" in details
    assert ended(limited, "refused") >= 1


# ----------------------------------------------------------------------------- the command


def seqserve(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seqserve.cli", *args], input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def test_seqserve_tag_tags_a_sentence(server):
    out = seqserve("tag", "The jury said it.", "--arch", "lstm", "--target", server.target)
    assert out.returncode == 0, out.stderr
    assert "The/DET jury/NOUN said/VERB it/PRON ./." in out.stdout and "tagging/lstm/" in out.stdout


@pytest.mark.parametrize("arch", ARCHS)
def test_seqserve_tag_stream_tags_piped_text_and_states_the_wait(server, arch):
    out = seqserve("tag", "--stream", "--arch", arch, "--target", server.target, stdin="The jury\nsaid it.\n")
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()]
    assert [(int(r[0]), r[1]) for r in rows] == [(0, "The"), (1, "jury"), (2, "said"), (3, "it"), (4, ".")]
    wait = "as soon as white space ends it" if arch in CAUSAL else "more word(s) have arrived"
    assert wait in out.stderr


def test_the_tensor_protocol_names_only_models_it_can_run(channel):
    # Tagging has no Open Inference tensor mapping: its models are not offered there.
    stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
    request = grpc_predict_v2_pb2.ModelMetadataRequest(name="tagging-lstm")
    code, details = error_of(lambda: stub.ModelMetadata(request, timeout=10))
    assert code == grpc.StatusCode.NOT_FOUND and "sentiment-lstm" in details and "tagging" not in details.split(";")[1]
