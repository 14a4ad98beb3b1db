"""Decoding in a worker process: same answers as in a thread, and what happens when the worker dies."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from pathlib import Path

import grpc
import prometheus_client
import pytest

from bench.common import children
from bench.translation import VERSES
from seqserve.manifest import ARCHS
from seqserve.v1 import translation_pb2, translation_pb2_grpc
from service.affinity import front_end_cpus
from service.errors import Unavailable
from service.metrics import Metrics
from service.repository import scan
from service.runtime import Runtime
from service.settings import Settings
from service.tasks.translation import Options, TranslationModel, TranslationTask
from tests.servers import ServerProcess


def load(repository: Path, arch: str = "gru", **settings) -> tuple[TranslationModel, Metrics]:
    s = Settings(**({"overload_budget_ms": 0} | settings))
    entry = next(e for e in scan(repository, ["translation"]) if e.arch == arch)
    metrics = Metrics(prometheus_client.CollectorRegistry())
    model = TranslationModel(entry, Runtime(s), s, metrics)
    model.load()
    return model, metrics


def worker_pid(model: TranslationModel) -> int:
    return model._scheduler._process.pid  # type: ignore[union-attr]


def ended(metrics: Metrics, reason: str) -> float:
    return metrics.decodes_ended.labels("translation", "gru", reason)._value.get()


async def translate_all(model: TranslationModel, beam: int) -> list[list[str]]:
    task = TranslationTask(None, model._settings)  # type: ignore[arg-type]  # the store is not used
    results = await asyncio.gather(
        *(task.translate(model, verse, Options(beam_size=beam, n_best=min(2, beam))) for verse in VERSES[:12])
    )
    return [[c.text for c in r.candidates] for r in results]


@pytest.mark.parametrize("beam", [1, 4])
async def test_a_worker_process_answers_what_the_decode_thread_answers(model_repository, beam):
    in_thread, _ = load(model_repository, decode_process=False)
    in_worker, _ = load(model_repository, decode_process=True)
    try:
        assert await translate_all(in_worker, beam) == await translate_all(in_thread, beam)
    finally:
        await in_thread.close()
        await in_worker.close()


@pytest.fixture
async def stopped(model_repository):
    """A model whose worker is stopped (SIGSTOP): what is sent to it stays held until it runs again."""
    model, metrics = load(model_repository)
    os.kill(worker_pid(model), signal.SIGSTOP)
    try:
        yield model, metrics, TranslationTask(None, model._settings)  # type: ignore[arg-type]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker_pid(model), signal.SIGCONT)
        await model.close()


async def test_a_dead_worker_fails_what_it_held_and_is_replaced(stopped):
    model, _, task = stopped
    old = worker_pid(model)
    held = [asyncio.create_task(task.translate(model, verse, Options())) for verse in VERSES[:3]]
    await asyncio.sleep(0.1)
    assert model.busy == 3
    os.kill(old, signal.SIGKILL)
    for call in held:
        with pytest.raises(Unavailable, match="decode process exited"):
            await call
    assert model.busy == 0
    deadline = time.monotonic() + 60
    while True:  # a new worker takes over; calls meanwhile are refused, not lost
        try:
            result = await task.translate(model, VERSES[0], Options(beam_size=1))
            break
        except Unavailable:
            assert time.monotonic() < deadline, "no new decode process within 60 s"
            await asyncio.sleep(0.2)
    assert result.candidates[0].text and worker_pid(model) != old


async def test_a_cancel_reaches_the_worker_and_its_end_reaches_the_metrics(stopped):
    model, metrics, task = stopped  # the cancel must arrive before the decode can finish
    pid = worker_pid(model)
    stream = task.stream(model, max(VERSES, key=len), Options(beam_size=16))
    first = asyncio.create_task(anext(aiter(stream)))
    await asyncio.sleep(0.1)
    assert model.busy == 1
    first.cancel()  # what a cancelled call does: the generator's cleanup cancels the job
    with contextlib.suppress(asyncio.CancelledError):
        await first
    os.kill(pid, signal.SIGCONT)
    deadline = time.monotonic() + 10
    while ended(metrics, "cancelled") < 1:
        assert time.monotonic() < deadline, "the worker never reported the cancelled decode"
        await asyncio.sleep(0.05)
    assert model.busy == 0


async def test_closing_fails_what_is_held_with_unavailable(model_repository):
    model, _ = load(model_repository)
    task = TranslationTask(None, model._settings)  # type: ignore[arg-type]
    calls = [asyncio.create_task(task.translate(model, verse, Options(beam_size=16))) for verse in VERSES * 2]
    await asyncio.sleep(0.05)
    await model.close()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    failed = [o for o in outcomes if isinstance(o, Exception)]
    assert failed, "every call finished before the close: nothing was tested"
    assert all(isinstance(o, Unavailable) and "shutting down" in str(o) for o in failed)
    assert model.busy == 0


def test_a_model_file_the_worker_cannot_load_is_a_load_error_naming_it(model_repository, tmp_path):
    entry = next(e for e in scan(model_repository, ["translation"]) if e.arch == "gru")
    copy = tmp_path / "translation" / "gru" / str(entry.version)
    shutil.copytree(entry.path, copy)
    decoder = copy / entry.manifest.files["decoder"]
    decoder.write_bytes(b"not an onnx model")
    with pytest.raises(RuntimeError, match=str(decoder)):
        load(tmp_path)


def _cpus(pid: int) -> set[int]:
    """The CPUs every thread of a process may run on (Linux's affinity is per thread)."""
    seen = set()
    for thread in os.listdir(f"/proc/{pid}/task"):
        seen.add(frozenset(os.sched_getaffinity(int(thread))))
    assert len(seen) == 1, f"threads of {pid} disagree: {seen}"
    return set(next(iter(seen)))


def test_decode_cpus_pin_the_workers_and_keep_the_rest_of_the_server_off_them(model_repository, tmp_path):
    allowed = os.sched_getaffinity(0)
    decode = max(allowed)
    rest = (allowed - {decode}) or allowed  # a one-CPU machine: the server shares it
    with ServerProcess(model_repository, tmp_path / "server.log", tasks='["translation"]',
                       decode_cpus=f"[{decode}]") as server, grpc.insecure_channel(server.target) as channel:
        stub = translation_pb2_grpc.TranslationStub(channel)
        reply = stub.Translate(translation_pb2.TranslateRequest(text=VERSES[0], beam_size=2), timeout=30)
        assert reply.hypotheses[0].text
        assert server.proc is not None
        assert _cpus(server.proc.pid) == rest
        # The server's children: the forkserver (the server's CPUs) and the resource tracker;
        # the forkserver's children are the decode processes, one per translation model.
        workers = [w for c in children(server.proc.pid) for w in children(c)]
        assert len(workers) == len(ARCHS)
        assert all(_cpus(w) == {decode} for w in workers)


def test_decode_cpus_the_server_may_not_use_stop_it_at_start_with_a_message(model_repository, tmp_path):
    missing = max(os.sched_getaffinity(0)) + 1
    server = ServerProcess(model_repository, tmp_path / "server.log", tasks='["translation"]',
                           decode_cpus=f"[{missing}]").start(expect_serving=False)
    assert server.proc is not None
    try:
        assert server.proc.wait(60) == 2
    finally:
        server.stop()
    assert f"CPUs [{missing}] are not among those this process may use" in server.logs()


def test_decode_cpus_where_there_is_no_cpu_affinity_are_refused_with_a_reason(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity")
    with pytest.raises(ValueError, match="needs Linux's CPU affinity"):
        front_end_cpus({1})
