"""Many tagging streams at once: per-token latency and tokens/s, stepped together or one ORT call per token.

    .venv/bin/python -m bench.streams [--archs lstm] [--streams 1 16 256 1000] [--rate 4] [--seconds 10]
        [--repository models] [--compare]

Each stream sends one word per message at ``--rate`` words/s (starts spread over a
second) and times each word from sending it to receiving its tag. ``--rate 0``
sends as fast as tags come back (saturation). ``--compare`` runs every point twice:
the service as configured (a model's live streams share each step run) and with
``max_batch_size=1`` (one ORT call per token), one right after the other on two
servers started together, and prints the ratio of tokens/s. "steal": the CPU time
the hypervisor took from this VM during the point.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from contextlib import ExitStack
from pathlib import Path

import grpc

from bench.common import cpu_steal, percentile, save, seqserve_server, table
from bench.tag_wait import TEXT
from seqserve.v1 import common_pb2, tagging_pb2, tagging_pb2_grpc


async def one_stream(stub: tagging_pb2_grpc.TaggingStub, arch: str, rate: float, stop_at: float,
                     latencies: list[float]) -> int:
    call = stub.TagStream(timeout=stop_at - time.perf_counter() + 60)
    await call.write(tagging_pb2.TagStreamRequest(model=common_pb2.ModelSelector(arch=arch)))
    await call.read()  # started
    sent: dict[int, float] = {}
    answered = asyncio.Event()
    done = 0

    async def read() -> None:
        nonlocal done
        while (reply := await call.read()) is not grpc.aio.EOF:
            now = time.perf_counter()
            for t in reply.tags.tokens:
                latencies.append(now - sent.pop(t.index))
                done += 1
            answered.set()

    reader = asyncio.create_task(read())
    await asyncio.sleep(random.random() / max(rate, 1.0))  # streams do not start in lockstep
    i, t0 = 0, time.perf_counter()
    while time.perf_counter() < stop_at:
        if rate:
            await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
        sent[i] = time.perf_counter()
        await call.write(tagging_pb2.TagStreamRequest(tokens=tagging_pb2.Tokens(tokens=[TEXT[i % len(TEXT)]])))
        i += 1
        if not rate:  # saturation: the next word once this one is tagged
            await answered.wait()
            answered.clear()
    await call.done_writing()
    await reader
    return done


async def run(target: str, arch: str, streams: int, rate: float, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(target) as channel:
        stub = tagging_pb2_grpc.TaggingStub(channel)
        start = time.perf_counter()
        counts = await asyncio.gather(*(one_stream(stub, arch, rate, start + seconds, latencies)
                                        for _ in range(streams)))
        elapsed = time.perf_counter() - start
    ms = sorted(x * 1000 for x in latencies)
    return {"streams": streams, "rate": rate, "tokens": sum(counts), "tokens_per_s": sum(counts) / elapsed,
            "p50_ms": percentile(ms, 0.5), "p99_ms": percentile(ms, 0.99)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", nargs="+", default=["lstm"])
    p.add_argument("--streams", nargs="+", type=int, default=[1, 16, 256, 1000])
    p.add_argument("--rate", type=float, default=4.0, help="words/s per stream; 0 = as fast as tags come back")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repository", type=Path, default=Path("models"))
    p.add_argument("--compare", action="store_true", help="also run with one ORT call per token")
    args = p.parse_args()
    configs = {"stepped together": {}}
    if args.compare:
        configs["one call per token"] = {"max_batch_size": "1"}
    results: dict[str, dict] = {}
    rows = []
    limits = {"max_streams": str(max(args.streams) + 10), "tasks": '["tagging"]'}
    with ExitStack() as stack:
        # Both servers at once, each point run on one and then the other: on a shared VM
        # the machine changes from minute to minute, and a ratio of runs minutes apart shows it.
        targets = {name: stack.enter_context(seqserve_server(args.repository, **limits, **settings)).target
                   for name, settings in configs.items()}
        for arch in args.archs:
            for n in args.streams:
                for name, target in targets.items():
                    with cpu_steal() as steal:
                        r = asyncio.run(run(target, arch, n, args.rate, args.seconds))
                    r["steal_percent"] = steal["percent"]
                    results[f"{name}/{arch}/{n}"] = r
                    rows.append([name, arch, n, args.rate, r["tokens_per_s"], r["p50_ms"], r["p99_ms"],
                                 f"{steal['percent']:.0f}%"])
    print(table(["mode", "arch", "streams", "words/s each", "tokens/s", "p50 ms", "p99 ms", "steal"], rows))
    if args.compare:
        for arch in args.archs:
            for n in args.streams:
                a = results[f"stepped together/{arch}/{n}"]["tokens_per_s"]
                b = results[f"one call per token/{arch}/{n}"]["tokens_per_s"]
                print(f"{arch} {n} streams: stepped together {a / b:.2f}x the tokens/s of one call per token")
    print(f"wrote {save('streams', {'args': vars(args) | {'repository': str(args.repository)}, 'results': results})}")


if __name__ == "__main__":
    main()
