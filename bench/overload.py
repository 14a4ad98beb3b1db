"""Overload: arrivals at multiples of what a model sustains; latency of admitted requests, refusals, memory.

    .venv/bin/python -m bench.overload [--arch gru] [--beam 4] [--multiples 1 2 10] [--seconds 20]
        [--budget-ms 10] [--repository models] [--decode-cpus 1] [--yield-cpu]

Translation with beam search (the server's default beam, verses of mixed length),
because there the model's compute, not the gRPC transport, is what runs out: one
client process can offer it 10x what it sustains, which it cannot do for greedy
decoding or sentiment on this machine (their sustained rates are a good part of
what the transport carries).
Steps: p99 unloaded (one call at a time) and the sustainable rate (closed loop, 32
calls in flight), both with admission off; then, on a server with ``--budget-ms``,
Poisson arrivals at each multiple of that rate (open loop: arrivals do not wait for
answers). Reports admitted p50/p99 and their ratio to the unloaded p99,
the share refused with RESOURCE_EXHAUSTED, any other error, and the server's memory
(PSS of it and its decode processes) sampled every half second. Writes
runs/bench/overload-*.json. The default budget, 10 ms (about the full GRU's unloaded
p50), is latency first: one or two translations decode at a time. 20-30 ms admits
more per second at about twice the latency; the server's own default, 1000 ms,
favours throughput and lets admitted latency grow to about a second.
``--decode-cpus 1`` runs both servers with SEQSERVE_DECODE_CPUS=[1] (decoding on
CPU 1, the rest of the server on the other); ``--yield-cpu`` runs this load
generator at nice 19 during the open-loop phases, so that it takes only CPU the
server leaves idle, as a client on another machine would take none (the limits
are measured before, at the usual priority: the unloaded p99 is the best case).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import time
from pathlib import Path

import grpc

from bench.common import closed_loop, cpu_steal, percentile, save, seqserve_server, table
from bench.translation import VERSES
from seqserve.v1 import common_pb2, translation_pb2, translation_pb2_grpc


def requests(arch: str, beam: int):
    model = common_pb2.ModelSelector(arch=arch)
    return itertools.cycle([translation_pb2.TranslateRequest(text=v, model=model, beam_size=beam) for v in VERSES])


async def open_loop(target: str, arch: str, beam: int, rate: float, seconds: float, server) -> dict[str, object]:
    latencies: list[float] = []
    codes: dict[str, int] = {}
    details: dict[str, str] = {}  # one message per status: what a refusal or a failure said
    memory: list[float] = []
    texts = requests(arch, beam)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = translation_pb2_grpc.TranslationStub(channel)

        async def one(request) -> None:
            t0 = time.perf_counter()
            try:
                await stub.Translate(request, timeout=60)
                latencies.append(time.perf_counter() - t0)
                code = "OK"
            except grpc.aio.AioRpcError as exc:
                code = exc.code().name
                details.setdefault(code, exc.details() or "")
            codes[code] = codes.get(code, 0) + 1

        async def sample() -> None:
            while True:
                memory.append(server.memory_mb())
                await asyncio.sleep(0.5)

        sampler = asyncio.create_task(sample())
        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        next_at = start
        while (now := time.perf_counter()) < start + seconds:
            if now < next_at:
                await asyncio.sleep(next_at - now)
            task = asyncio.create_task(one(next(texts)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            next_at += random.expovariate(rate)
        await asyncio.gather(*tasks)
        sampler.cancel()
    ms = sorted(x * 1000 for x in latencies)
    offered = sum(codes.values())
    return {"rate": rate, "offered": offered, "codes": codes, "details": details, "admitted": len(ms),
            "refused_share": codes.get("RESOURCE_EXHAUSTED", 0) / max(1, offered),
            "p50_ms": percentile(ms, 0.5), "p99_ms": percentile(ms, 0.99),
            "memory_mb": {"start": memory[0] if memory else None, "max": max(memory, default=None),
                       "end": memory[-1] if memory else None}}


async def closed(target: str, arch: str, beam: int, concurrency: int, seconds: float):
    texts = requests(arch, beam)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = translation_pb2_grpc.TranslationStub(channel)
        return await closed_loop(lambda: stub.Translate(next(texts), timeout=60), concurrency, seconds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="gru")
    p.add_argument("--beam", type=int, default=4, help="beam size of every request (4 is the server's default)")
    p.add_argument("--multiples", nargs="+", type=float, default=[1, 2, 10])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--budget-ms", type=float, default=10.0, help="SEQSERVE_OVERLOAD_BUDGET_MS for this run")
    p.add_argument("--repository", type=Path, default=Path("models"))
    p.add_argument("--decode-cpus", type=int, nargs="*", default=[], help="SEQSERVE_DECODE_CPUS for both servers")
    p.add_argument("--yield-cpu", action="store_true",
                   help="run the open-loop phases at nice 19, taking only CPU the server leaves idle")
    args = p.parse_args()
    pinning = {"decode_cpus": json.dumps(args.decode_cpus)} if args.decode_cpus else {}
    # The limits with admission off, so that refusals do not pass for capacity.
    with seqserve_server(args.repository, tasks='["translation"]', overload_budget_ms="0", **pinning) as server:
        with cpu_steal() as unloaded_steal:
            unloaded = asyncio.run(closed(server.target, args.arch, args.beam, 1, args.seconds))
        sustained = asyncio.run(closed(server.target, args.arch, args.beam, 32, args.seconds))
    with seqserve_server(args.repository, tasks='["translation"]', overload_budget_ms=str(args.budget_ms),
                         **pinning) as server:
        if args.yield_cpu:  # after the limits, which are measured at the usual priority: the best case
            for thread in os.listdir("/proc/self/task"):  # Linux's priority is per thread
                with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
                    os.setpriority(os.PRIO_PROCESS, int(thread), 19)
        rows, runs = [], {}
        for m in args.multiples:
            rate = m * sustained.per_second
            with cpu_steal() as steal:
                r = asyncio.run(open_loop(server.target, args.arch, args.beam, rate, args.seconds, server))
            r["cpu_steal_percent"] = steal["percent"]
            runs[str(m)] = r
            other = {k: v for k, v in r["codes"].items() if k not in ("OK", "RESOURCE_EXHAUSTED")}
            rows.append([f"{m:g}x", r["rate"], r["offered"], r["admitted"], f"{100 * r['refused_share']:.0f}%",
                         r["p50_ms"], r["p99_ms"], f"{r['p99_ms'] / unloaded.p99_ms:.2f}", str(other or "-"),
                         f"{r['memory_mb']['start']:.0f}/{r['memory_mb']['max']:.0f}/{r['memory_mb']['end']:.0f}",
                         f"{r['cpu_steal_percent']:.1f}"])
    print(f"translation/{args.arch}, beam {args.beam}: "
          f"unloaded p50 {unloaded.p50_ms:.1f} ms, p99 {unloaded.p99_ms:.1f} ms "
          f"(CPU stolen by the hypervisor {unloaded_steal['percent']:.1f}%); "
          f"sustained {sustained.per_second:.1f}/s at 32 in flight (p99 {sustained.p99_ms:.0f} ms); "
          f"budget {args.budget_ms:g} ms; decode CPUs {args.decode_cpus or 'any'}"
          f"{'; load generator at nice 19' if args.yield_cpu else ''}")
    print(table(["load", "arrivals/s", "offered", "admitted", "refused", "p50 ms", "p99 ms", "p99 / unloaded",
                 "other errors", "memory MB start/max/end", "stolen CPU %"], rows))
    for m, r in runs.items():
        for code, said in r["details"].items():
            print(f"{float(m):g}x {code}: {said}")
    payload = {"args": vars(args) | {"repository": str(args.repository)}, "unloaded": unloaded,
               "unloaded_cpu_steal_percent": unloaded_steal["percent"],
               "sustained": sustained, "runs": runs}
    print(f"wrote {save('overload', payload)}")


if __name__ == "__main__":
    main()
