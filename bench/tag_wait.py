"""What a tagging stream's wait costs: per-word time from sending a word to receiving its tag.

    .venv/bin/python -m bench.tag_wait --target localhost:50051 [--rate 4] [--words 200]

Streams test-like text word by word at a fixed rate (a typist, a speech
recognizer) to every architecture in turn, one word per message, and prints
p50/p95/max of the client-side wait per word with the model's lookahead, and
writes the numbers as JSON. A causal model's wait is its compute; a lookahead
model's is about ``lookahead / rate`` plus the re-encoding of its window.
"""

from __future__ import annotations

import argparse
import json
import queue
import statistics
import sys
import threading
import time
from pathlib import Path

import grpc

from seqserve.manifest import ARCHS
from seqserve.v1 import common_pb2, tagging_pb2, tagging_pb2_grpc

TEXT = (
    "The jury further said in term-end presentments that the City Executive Committee , which had over-all "
    "charge of the election , deserves the praise and thanks of the City of Atlanta for the manner in which "
    "the election was conducted ."
).split()


def run_stream(stub: tagging_pb2_grpc.TaggingStub, arch: str, words: list[str], rate: float) -> dict[str, float]:
    sent: dict[int, float] = {}
    waits: list[float] = []
    requests: queue.Queue[tagging_pb2.TagStreamRequest | None] = queue.Queue()
    requests.put(tagging_pb2.TagStreamRequest(model=common_pb2.ModelSelector(arch=arch)))
    call = stub.TagStream(iter(requests.get, None), timeout=60 + len(words) / rate)
    started = next(call).started

    def feed() -> None:
        t0 = time.perf_counter()
        for i, word in enumerate(words):
            time.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
            sent[i] = time.perf_counter()
            requests.put(tagging_pb2.TagStreamRequest(tokens=tagging_pb2.Tokens(tokens=[word])))
        requests.put(None)

    feeder = threading.Thread(target=feed)
    feeder.start()
    last = len(words) - started.lookahead  # the rest come at the end of the input, not by the wait
    for reply in call:
        now = time.perf_counter()
        waits += [now - sent[t.index] for t in reply.tags.tokens if t.index < last]
    feeder.join()
    ms = sorted(w * 1000 for w in waits)
    return {
        "lookahead": started.lookahead,
        "words": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 2),
        "max_ms": round(ms[-1], 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="localhost:50051")
    p.add_argument("--rate", type=float, default=4.0, help="words per second sent (default 4)")
    p.add_argument("--words", type=int, default=120, help="words per architecture")
    p.add_argument("--arch", nargs="+", default=list(ARCHS))
    p.add_argument("--out", type=Path, default=Path("runs/bench/tag_wait.json"))
    args = p.parse_args(argv)
    words = (TEXT * (args.words // len(TEXT) + 1))[: args.words]
    results = {}
    with grpc.insecure_channel(args.target) as channel:
        stub = tagging_pb2_grpc.TaggingStub(channel)
        print(f"{'arch':<12}{'lookahead':>10}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}   ({args.rate:g} words/s)")
        for arch in args.arch:
            r = results[arch] = run_stream(stub, arch, words, args.rate)
            print(f"{arch:<12}{r['lookahead']:>10}{r['p50_ms']:>10.2f}{r['p95_ms']:>10.2f}{r['max_ms']:>10.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rate": args.rate, "results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
