"""Concurrency sweeps per task and architecture, beside the limits measured in the same run.

    .venv/bin/python -m bench.sweep [--tasks sentiment tagging translation] [--archs lstm gru]
        [--concurrency 1 4 16 64 256] [--seconds 5] [--repository models] [--channels 1] [--set processes=2]

For each point (task, architecture, concurrency): a trivial gRPC echo (bench/echo.py,
same request size) measured just before the service (one server on ``--repository``),
both driven by the same closed-loop client, so that the two see the same machine (on
a shared VM, minutes apart they need not); and raw ONNX Runtime on the same model and
inputs, batch 1 and batch = min(concurrency, max batch), in this process with the
server's session settings. Prints one table per task and writes everything to runs/bench/sweep-*.json.
Columns: throughput and p50/p95/p99 of the service; its throughput as a share of
the echo's; "p50 over limit" = service p50 - (echo p50 + raw ORT p50 at batch 1); and
the CPU time the hypervisor took from this VM (steal) while the echo and service ran.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
from prometheus_client import CollectorRegistry

from bench.common import LoadResult, closed_loop, cpu_steal, echo_server, median_ms, save, seqserve_server, table
from bench.echo import UNARY
from seqserve import decoding
from seqserve.manifest import ARCHS
from seqserve.v1 import (
    common_pb2,
    sentiment_pb2,
    sentiment_pb2_grpc,
    tagging_pb2,
    tagging_pb2_grpc,
    translation_pb2,
    translation_pb2_grpc,
)
from service import repository as repo
from service.metrics import Metrics
from service.runtime import Runtime
from service.settings import Settings
from service.tasks.sentiment import SentimentModel
from service.tasks.tagging import TaggingModel

SENTENCE = "the acting is wonderful and the story moves quickly , but the ending falls apart in the last half hour"
VERSE = "And God said, Let there be light: and there was light."


def request_for(task: str, arch: str) -> tuple[object, Callable[[grpc.aio.Channel], Callable[..., Awaitable]]]:
    model = common_pb2.ModelSelector(arch=arch)
    if task == "sentiment":
        return sentiment_pb2.ClassifyRequest(text=SENTENCE, model=model), lambda ch: sentiment_pb2_grpc.SentimentStub(ch).Classify
    if task == "tagging":
        return (tagging_pb2.TagRequest(sentences=[tagging_pb2.Sentence(text=SENTENCE)], model=model),
                lambda ch: tagging_pb2_grpc.TaggingStub(ch).Tag)
    return (translation_pb2.TranslateRequest(text=VERSE, model=model, beam_size=1),
            lambda ch: translation_pb2_grpc.TranslationStub(ch).Translate)


async def drive(target: str, make: Callable[[grpc.aio.Channel], Callable[..., Awaitable]], request: object,
                concurrency: int, seconds: float, channels: int = 1) -> LoadResult:
    """Closed loop over ``channels`` connections (calls take them in turn): the kernel
    hands each connection to one server process, so several processes need several."""
    opened = [grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
              for _ in range(channels)]
    methods = itertools.cycle([make(ch) for ch in opened])
    try:
        return await closed_loop(lambda: next(methods)(request, timeout=30), concurrency, seconds)
    finally:
        for ch in opened:
            await ch.close()


def echo_call(channel: grpc.aio.Channel) -> Callable[..., Awaitable]:
    return channel.unary_unary(UNARY)


def raw_ort_ms(task: str, arch: str, repository: Path, batch: int, **overrides: object) -> float:
    """The served model's own ORT path (the code the batcher runs), without the server around it;
    ``overrides`` change server settings (the ORT session options among them)."""
    settings = Settings(model_repository=repository, **overrides)
    (entry,) = [e for e in repo.scan(repository, [task]) if e.arch == arch][-1:]
    runtime, metrics = Runtime(settings), Metrics(CollectorRegistry())
    with ThreadPoolExecutor(1) as pool:
        if task == "sentiment":
            model = SentimentModel(entry, runtime, settings, metrics, pool)
            model.load()
            rows = [model._encoder.encode(SENTENCE, "text")] * batch
            return median_ms(lambda: model._run(rows), 100)
        if task == "tagging":
            tagger = TaggingModel(entry, runtime, settings, metrics, pool)
            tagger.load()
            sentences = [tagger.encode(SENTENCE.split())] * batch
            return median_ms(lambda: tagger._run_full(sentences), 100)
    from seqserve.subword import SubwordModel

    m = entry.manifest
    enc = runtime.session(entry.path / m.files["encoder"])
    dec = runtime.session(entry.path / m.files["decoder"])
    encode, step = decoding.session_callables(enc, dec, m.streaming)
    ids = SubwordModel.load(entry.path / m.files["source_subwords"]).encode(VERSE)
    src, lengths = np.array([ids] * batch, np.int64), np.array([len(ids)] * batch, np.int64)
    kw = dict(bos_id=m.streaming["bos_id"], eos_id=m.streaming["eos_id"],
              batch_axes=decoding.state_batch_axes(m.streaming), memory_axes=decoding.memory_axes(m.streaming))
    return median_ms(lambda: decoding.greedy(encode, step, src, lengths, **kw), 20)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=["sentiment", "tagging", "translation"])
    p.add_argument("--archs", nargs="+", default=list(ARCHS))
    p.add_argument("--concurrency", nargs="+", type=int, default=[1, 4, 16, 64, 256])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--repository", type=Path, default=Path("models"))
    p.add_argument("--channels", type=int, default=1,
                   help="client connections (each server process gets whole connections)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a server setting for this run, e.g. --set max_batch_size=64")
    args = p.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    max_batch = int(overrides.get("max_batch_size", Settings().max_batch_size))
    results: dict[str, object] = {"settings": overrides, "tasks": {}}

    with echo_server() as echo, seqserve_server(args.repository, tasks=_json_list(args.tasks), **overrides) as server:
        target = server.target
        for task in args.tasks:
            rows, task_results = [], {}
            for arch in args.archs:
                request, make = request_for(task, arch)
                raw1 = raw_ort_ms(task, arch, args.repository, 1)
                for c in args.concurrency:
                    raw_b = raw1 if c == 1 else raw_ort_ms(task, arch, args.repository, min(c, max_batch))
                    with cpu_steal() as steal:
                        e = asyncio.run(drive(echo, echo_call, SENTENCE.encode() * 2, c, args.seconds, args.channels))
                        res = asyncio.run(drive(target, make, request, c, args.seconds, args.channels))
                    task_results[f"{arch}/{c}"] = {"service": res, "raw_ort_ms_batch1": raw1,
                                                   "raw_ort_ms_batch": raw_b, "echo": e,
                                                   "steal_percent": steal["percent"]}
                    rows.append([arch, c, res.per_second, res.p50_ms, res.p95_ms, res.p99_ms, res.errors,
                                 e.per_second, e.p50_ms, raw1, raw_b,
                                 f"{100 * res.per_second / e.per_second:.0f}%", res.p50_ms - e.p50_ms - raw1,
                                 f"{steal['percent']:.0f}%"])
            results["tasks"][task] = task_results
            print(f"\n== {task}")
            print(table(["arch", "conc", "req/s", "p50 ms", "p95", "p99", "err", "echo req/s", "echo p50",
                         "ORT b1 ms", "ORT bN ms", "of echo", "p50 over limit", "steal"], rows))
    print(f"\nwrote {save('sweep', results)}")


def _json_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


if __name__ == "__main__":
    main()
