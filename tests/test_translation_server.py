"""Translation against a real server: Translate and TranslateStream for every architecture,
answers equal to decoding the model's files offline, limits, cancellation, metrics, the command."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest

from seqserve import decoding
from seqserve.manifest import ARCHS, Manifest
from seqserve.subword import SubwordModel
from seqserve.v1 import common_pb2, translation_pb2, translation_pb2_grpc
from tests.offline import onnx_callables
from tests.servers import ROOT, ServerProcess, error_of, metric, scrape, wait_for_metric

GENESIS = "In the beginning God created the heavens and the earth."
SENTENCES = [
    GENESIS,
    "Jesus wept.",
    "And God said, Let there be light: and there was light.",
    "The Lord is my shepherd; I shall not want.",
]


def stub(channel: grpc.Channel) -> translation_pb2_grpc.TranslationStub:
    return translation_pb2_grpc.TranslationStub(channel)


def request(text: str, arch: str = "", **options: int) -> translation_pb2.TranslateRequest:
    return translation_pb2.TranslateRequest(text=text, model=common_pb2.ModelSelector(arch=arch), **options)


def translate(channel: grpc.Channel, text: str, arch: str = "", **options: int) -> translation_pb2.TranslateResponse:
    return stub(channel).Translate(request(text, arch, **options), timeout=60)


def stream(channel: grpc.Channel, text: str, arch: str = "", **options: int):
    return list(stub(channel).TranslateStream(request(text, arch, **options), timeout=60))


def version_dir(repository: Path, arch: str) -> Path:
    versions = sorted((repository / "translation" / arch).iterdir(), key=lambda p: int(p.name))
    return versions[-1]


def offline(repository: Path, arch: str, texts: list[str], beam: int, n_best: int = 1) -> list[list[str]]:
    """The n-best texts of decoding the files in this process, with the server's default limits."""
    folder = version_dir(repository, arch)
    m, encode, step = onnx_callables(folder)
    source = SubwordModel.load(folder / m.files["source_subwords"])
    target = SubwordModel.load(folder / m.files["target_subwords"])
    out = []
    for text in texts:  # one at a time: the server's answer must not depend on its company
        ids = source.encode(text)
        src, lengths = np.array([ids], np.int64), np.array([len(ids)], np.int64)
        kw = dict(
            bos_id=m.streaming["bos_id"], eos_id=m.streaming["eos_id"],
            max_len=decoding.default_max_len(lengths, m.streaming["max_len"]["a"], m.streaming["max_len"]["b"]),
            batch_axes=decoding.state_batch_axes(m.streaming), memory_axes=decoding.memory_axes(m.streaming),
        )
        if beam == 0:
            (t,) = decoding.greedy(encode, step, src, lengths, **kw)
        else:
            (t,) = decoding.beam_search(encode, step, src, lengths, beam_size=beam, n_best=n_best, **kw)
        out.append([target.decode(h.tokens) for h in t.hypotheses])
    return out


# ----------------------------------------------------------------------------- answers


@pytest.mark.parametrize("arch", ARCHS)
def test_translate_answers_with_the_model_that_made_it(channel, arch):
    reply = translate(channel, GENESIS, arch, beam_size=4)
    assert reply.model.task == "translation" and reply.model.arch == arch and reply.model.version >= 1
    (best,) = reply.hypotheses
    assert best.text.strip() and best.length > 0 and best.score <= 0 and best.log_prob <= 0
    assert reply.source_length > 5


@pytest.mark.parametrize("arch", ARCHS)
def test_the_server_decodes_exactly_as_the_files_do_offline(channel, model_repository, arch):
    # Offline = numpy search over ORT in this process, which export checked token for
    # token against the PyTorch model (tests/test_translation_export.py).
    greedy = offline(model_repository, arch, SENTENCES, beam=0)
    beam1 = offline(model_repository, arch, SENTENCES, beam=1)
    beam4 = offline(model_repository, arch, SENTENCES, beam=4, n_best=3)
    assert beam1 == greedy  # beam search of width 1 is greedy search
    for text, g, b in zip(SENTENCES, greedy, beam4):
        assert [h.text for h in translate(channel, text, arch, beam_size=1).hypotheses] == g
        assert [h.text for h in translate(channel, text, arch, beam_size=4, n_best=3).hypotheses] == b


def exported_from(version_dir: Path):
    """The PyTorch model this version was exported from, if its checkpoint is still in the runs
    directory (the same training run: same config and the same test BLEU signature)."""
    torch = pytest.importorskip("torch")
    from export import paths
    from export.translation.model import load_seq2seq

    m = Manifest.load(version_dir)
    path = paths.runs_dir() / "translation" / m.arch / "checkpoint.pt"
    if not path.is_file():
        return None
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    same = ckpt["config"] == m.model_config and ckpt["metrics"].get("bleu_signature") == m.training.get("bleu_signature")
    return load_seq2seq(path)[0] if same else None


@pytest.mark.parametrize("arch", ARCHS)
def test_the_server_answers_what_the_pytorch_model_decodes(channel, model_repository, arch):
    from export.translation.decode import translate as torch_translate

    folder = version_dir(model_repository, arch)
    model = exported_from(folder)
    if model is None:  # CI trains the quick models first, so there the checkpoints are there
        pytest.skip(f"the checkpoint {folder} was exported from is not in the runs directory")
    m = Manifest.load(folder)
    source = SubwordModel.load(folder / m.files["source_subwords"])
    target = SubwordModel.load(folder / m.files["target_subwords"])
    for text in SENTENCES:
        ids = source.encode(text)
        limit = int(decoding.default_max_len(np.array([len(ids)]), m.streaming["max_len"]["a"],
                                             m.streaming["max_len"]["b"])[0])
        for beam in (1, 4):
            (expected,) = torch_translate(model, [ids], beam_size=beam, max_len=limit)
            served = translate(channel, text, arch, beam_size=beam).hypotheses[0].text
            assert served == target.decode(expected.tokens), (arch, beam, text)


def test_concurrent_requests_get_the_answers_they_get_alone(channel):
    jobs = [(text, arch, beam) for text in SENTENCES for arch in ("gru", "transformer") for beam in (1, 4)]
    alone = {job: translate(channel, job[0], job[1], beam_size=job[2]).hypotheses[0].text for job in jobs}
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda job: translate(channel, job[0], job[1], beam_size=job[2]), jobs * 3))
    assert [r.hypotheses[0].text for r in together] == [alone[job] for job in jobs * 3]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("beam", [1, 4])
def test_streamed_pieces_concatenate_to_the_unary_answer(channel, arch, beam):
    unary = translate(channel, GENESIS, arch, beam_size=beam)
    replies = stream(channel, GENESIS, arch, beam_size=beam)
    *pieces, last = replies
    assert last.WhichOneof("kind") == "result" and all(p.WhichOneof("kind") == "text" for p in pieces)
    assert "".join(p.text for p in pieces) == unary.hypotheses[0].text == last.result.hypotheses[0].text
    assert last.result.model == unary.model
    # How many pieces depends on how far decoding runs ahead of the transport (steps the
    # stream fell behind on go out as one piece); tests/test_decode_scheduler.py shows a
    # reader that keeps up gets every step's tokens as they are decoded.


def test_n_best_and_max_length(channel):
    reply = translate(channel, GENESIS, "gru", beam_size=5, n_best=3)
    scores = [h.score for h in reply.hypotheses]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    cut = translate(channel, GENESIS, "gru", beam_size=1, max_length=3)
    (h,) = cut.hypotheses
    assert h.length <= 3 and (h.truncated or h.length < 3)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "text, options, code, words",
    [
        ("", {}, grpc.StatusCode.INVALID_ARGUMENT, "empty"),
        ("  \n\t ", {}, grpc.StatusCode.INVALID_ARGUMENT, "empty"),
        ("a" * 2001, {}, grpc.StatusCode.INVALID_ARGUMENT, "2001 characters"),
        ("light " * 300, {}, grpc.StatusCode.INVALID_ARGUMENT, "subword pieces"),
        (GENESIS, {"beam_size": 17}, grpc.StatusCode.INVALID_ARGUMENT, "beam_size 17"),
        (GENESIS, {"beam_size": 2, "n_best": 3}, grpc.StatusCode.INVALID_ARGUMENT, "n_best 3"),
        (GENESIS, {"max_length": 513}, grpc.StatusCode.INVALID_ARGUMENT, "max_length 513"),
    ],
)
def test_bad_input_is_invalid_argument_with_a_reason(channel, text, options, code, words):
    for call in (lambda: translate(channel, text, **options), lambda: stream(channel, text, **options)):
        got, details = error_of(call)
        assert got == code and words in details
    assert translate(channel, "Jesus wept.").hypotheses[0].text  # and the server goes on


def test_an_unknown_architecture_is_not_found_and_names_what_exists(channel):
    code, details = error_of(lambda: translate(channel, GENESIS, "lstm2"))
    assert code == grpc.StatusCode.NOT_FOUND and "transformer" in details


def test_odd_text_is_translated_not_refused(channel):
    for text in ("Zorblatt!!! 🙂 ¿Qué? 北京 \x07", "GOD SAID 1,234 TIMES"):
        assert translate(channel, text, beam_size=2).hypotheses


# ----------------------------------------------------------------------------- cancellation and metrics


def wait_idle(server: ServerProcess, timeout: float = 20) -> float:
    """Sentences in the running decode batches, once they reach 0 (or the timeout passes)."""
    deadline = time.monotonic() + timeout
    while (now := metric(scrape(server), "seqserve_decode_sequences", task="translation")) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    return now


def stopped(server: ServerProcess) -> float:
    text = scrape(server)
    return sum(metric(text, "seqserve_decodes_ended_total", reason=r) for r in ("cancelled", "deadline"))


def test_a_cancelled_stream_stops_its_decoding_and_frees_the_rows(channel, server):
    before = metric(scrape(server), "seqserve_decodes_ended_total", reason="cancelled")
    # A long source and a wide beam: hundreds of decoder steps if left alone.
    call = stub(channel).TranslateStream(request("the light of the earth " * 40, "transformer", beam_size=16),
                                         timeout=60)
    first = next(call)
    assert first.WhichOneof("kind") == "text"
    call.cancel()
    assert wait_for_metric(server, "seqserve_decodes_ended_total", before + 1, reason="cancelled") == before + 1
    assert wait_idle(server) == 0


def test_a_passed_deadline_stops_decoding(channel, server):
    completed = lambda: metric(scrape(server), "seqserve_decodes_ended_total", arch="transformer",  # noqa: E731
                               reason="completed")
    before_stopped, before_completed = stopped(server), completed()
    with pytest.raises(grpc.RpcError) as info:
        stub(channel).Translate(request("the light of the earth " * 40, "transformer", beam_size=16), timeout=0.1)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # grpc cancels the handler at the deadline, or the decode loop sees the deadline first;
    # either way the work leaves the batch (on a slow machine the call may even expire
    # before it reaches the server, and then nothing runs at all).
    assert wait_idle(server) == 0
    assert completed() == before_completed
    assert stopped(server) - before_stopped in (0, 1)


def test_decoding_metrics_per_architecture(channel, server):
    translate(channel, GENESIS, "lstm", beam_size=4)
    stream(channel, GENESIS, "lstm", beam_size=1)
    text = scrape(server)
    for name in (
        "seqserve_decode_first_token_seconds_count",
        "seqserve_decode_time_per_token_seconds_count",
        "seqserve_decode_output_tokens_count",
        "seqserve_inference_duration_seconds_count",
        "seqserve_queue_duration_seconds_count",
    ):
        assert metric(text, name, task="translation", arch="lstm") >= 2, name
    for method in ("Translate", "TranslateStream"):
        assert metric(text, "seqserve_request_duration_seconds_count", task="translation", arch="lstm",
                      method=method) >= 1
    assert metric(text, "seqserve_decodes_ended_total", task="translation", arch="lstm", reason="completed") >= 2


# ----------------------------------------------------------------------------- the command


def seqserve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seqserve.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


@pytest.mark.parametrize("arch", ARCHS)
def test_seqserve_translate_and_its_stream_variant(server, channel, arch):
    expected = translate(channel, GENESIS, arch, beam_size=4).hypotheses[0].text
    for extra in ([], ["--stream"]):
        out = seqserve("translate", GENESIS, "--arch", arch, "--beam", "4", *extra, "--target", server.target)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == expected and f"translation/{arch}/" in out.stderr


def test_seqserve_translate_n_best(server):
    out = seqserve("translate", GENESIS, "--arch", "gru", "--beam", "4", "--n-best", "2", "--target", server.target)
    assert out.returncode == 0, out.stderr
    assert [line[:3] for line in out.stdout.splitlines()] == ["1. ", "2. "]


def test_concurrent_streams_get_only_their_own_pieces(channel):
    # Requests of one model share every decoder step; each stream must carry only its own text.
    results: dict[int, str] = {}

    def run(i: int) -> None:
        replies = stream(channel, SENTENCES[i % len(SENTENCES)], "rnn", beam_size=1 + i % 3)
        results[i] = "".join(r.text for r in replies[:-1]) + "|" + replies[-1].result.hypotheses[0].text

    threads = [threading.Thread(target=run, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, joined in results.items():
        pieces, final = joined.split("|")
        assert pieces == final
    assert len(results) == 12
