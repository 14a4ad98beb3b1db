"""Translation under load: continuous (iteration-level) batching against request-level batching.

    .venv/bin/python -m bench.translation [--archs gru transformer] [--concurrency 1 4 16 32 64]
        [--beam 1] [--seconds 10] [--repository models] [--modes continuous request static]

One server per ``SEQSERVE_DECODE_BATCHING`` mode, driven in turn point by point by the same
closed-loop client streaming translations of verses of very different lengths
(``TranslateStream``). The two baselines: ``request`` lets no new translation into a
running batch but lets finished ones leave; ``static`` also keeps finished ones'
rows stepping until the longest ends (a one-shot padded batch). Per point:
sentences/s, time to first token (first text piece) p50/p99, whole-request
p50/p99, messages per translation (text pieces and the result) and CPU per
translation in the client, the server's process and its decode processes; then the
ratio of sentences/s, continuous over each baseline, and of the decode processes'
CPU per sentence (the batching's own work, without the transport both modes pay).
Writes runs/bench/translation-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import time
from pathlib import Path

import grpc

from bench.common import RunningServer, cpu_steal, percentile, save, seqserve_server, table
from seqserve.v1 import common_pb2, translation_pb2, translation_pb2_grpc

# Short and long on purpose: request-level batches wait for their longest member.
VERSES = [
    "Jesus wept.",
    "In the beginning God created the heavens and the earth.",
    "Rejoice always.",
    "And God said, Let there be light: and there was light.",
    "The Lord is my shepherd; I shall not want.",
    "Pray without ceasing.",
    "For God so loved the world, that he gave his only born Son, that whoever believes in him should not perish,"
    " but have eternal life.",
    "Love is patient and is kind; love doesn't envy. Love doesn't brag, is not proud, doesn't behave itself"
    " inappropriately, doesn't seek its own way, is not provoked, takes no account of evil.",
]


async def run(target: str, arch: str, concurrency: int, beam: int, seconds: float,
              server: RunningServer | None = None) -> dict[str, float]:
    first, total, done, messages = [], [], 0, 0
    texts = itertools.cycle(VERSES)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = translation_pb2_grpc.TranslationStub(channel)
        stop_at = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done, messages
            while time.perf_counter() < stop_at:
                request = translation_pb2.TranslateRequest(
                    text=next(texts), model=common_pb2.ModelSelector(arch=arch), beam_size=beam
                )
                t0, t_first = time.perf_counter(), None
                async for reply in stub.TranslateStream(request, timeout=120):
                    messages += 1
                    if t_first is None:
                        t_first = time.perf_counter()
                total.append(time.perf_counter() - t0)
                first.append((t_first or time.perf_counter()) - t0)
                done += 1

        start, client0 = time.perf_counter(), time.process_time()
        server0 = server.cpu_seconds() if server else (0.0, 0.0)
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        client_s = time.process_time() - client0
        server_s, decode_s = (b - a for a, b in zip(server0, server.cpu_seconds() if server else (0.0, 0.0)))
    f, t = sorted(x * 1000 for x in first), sorted(x * 1000 for x in total)
    return {"concurrency": concurrency, "sentences": done, "sentences_per_s": done / elapsed,
            "ttft_p50_ms": percentile(f, 0.5), "ttft_p99_ms": percentile(f, 0.99),
            "p50_ms": percentile(t, 0.5), "p99_ms": percentile(t, 0.99),
            "messages_per_sentence": messages / max(done, 1),
            # CPU per translation: the client, the server's process, its decode processes.
            "client_cpu_ms": client_s * 1000 / max(done, 1), "server_cpu_ms": server_s * 1000 / max(done, 1),
            "decode_cpu_ms": decode_s * 1000 / max(done, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", nargs="+", default=["gru", "transformer"])
    p.add_argument("--concurrency", nargs="+", type=int, default=[1, 4, 16, 32, 64])
    p.add_argument("--beam", type=int, default=1)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repository", type=Path, default=Path("models"))
    p.add_argument("--modes", nargs="+", choices=["continuous", "request", "static"],
                   default=["continuous", "request", "static"])
    args = p.parse_args()
    results: dict[str, dict] = {}
    with contextlib.ExitStack() as stack:
        # One server per mode, all up at once and driven in turn point by point, so a
        # slow minute on a shared machine falls on every mode alike. Admission off: a
        # closed loop bounds the queue by itself, and the slowest mode (static,
        # Transformer, 64 in flight) would otherwise meet refusals, not its speed.
        servers = {
            mode: stack.enter_context(seqserve_server(
                args.repository, tasks='["translation"]', decode_batching=mode, overload_budget_ms="0"
            ))
            for mode in args.modes
        }
        for arch in args.archs:
            for server in servers.values():
                # Unmeasured: a new server's first seconds are slow (first runs of each shape).
                asyncio.run(run(server.target, arch, 4, args.beam, 2.0))
            for c, (mode, server) in itertools.product(args.concurrency, servers.items()):
                with cpu_steal() as steal:
                    r = asyncio.run(run(server.target, arch, c, args.beam, args.seconds, server))
                results[f"{mode}/{arch}/{c}"] = r | {"cpu_steal_percent": steal["percent"]}
    rows = [
        [mode, arch, c, r["sentences_per_s"], r["ttft_p50_ms"], r["ttft_p99_ms"], r["p50_ms"], r["p99_ms"],
         r["messages_per_sentence"], r["client_cpu_ms"], r["server_cpu_ms"], r["decode_cpu_ms"],
         f"{r['cpu_steal_percent']:.0f}%"]
        for mode, arch, c in itertools.product(args.modes, args.archs, args.concurrency)
        for r in [results[f"{mode}/{arch}/{c}"]]
    ]
    print(table(["batching", "arch", "conc", "sent/s", "TTFT p50 ms", "TTFT p99", "p50 ms", "p99 ms", "msgs/sent",
                 "CPU ms/sent: client", "server", "decode", "steal"], rows))
    if "continuous" in args.modes:
        for arch, base in itertools.product(args.archs, [m for m in args.modes if m != "continuous"]):
            ratios = [
                f"{c}: {results[f'continuous/{arch}/{c}']['sentences_per_s'] / results[f'{base}/{arch}/{c}']['sentences_per_s']:.2f}x"
                for c in args.concurrency
            ]
            print(f"{arch} continuous / {base} sentences/s by concurrency: {', '.join(ratios)}")
            decode = [
                f"{c}: {results[f'{base}/{arch}/{c}']['decode_cpu_ms'] / cont:.2f}x" if cont else f"{c}: -"
                for c in args.concurrency
                for cont in [results[f"continuous/{arch}/{c}"]["decode_cpu_ms"]]  # 0 without decode processes
            ]
            print(f"{arch} decode processes' CPU per sentence, {base} / continuous: {', '.join(decode)}")
    print(f"wrote {save('translation', {'args': vars(args) | {'repository': str(args.repository)}, 'results': results})}")


if __name__ == "__main__":
    main()
