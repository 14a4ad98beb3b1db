"""Clients that send and never read: does the server's memory stay bounded?

    .venv/bin/python -m bench.slow_reader [--streams 20] [--messages 5000] [--repository models]

Opens ``--streams`` tagging streams that each send ``--messages`` words without
reading a single answer, and as many translation streams that are not read,
samples the server's memory while they push, then reads everything and closes. With
HTTP/2 flow control the server stops reading a stream whose answers are not
taken, so memory should level off instead of growing with the messages sent.
Writes runs/bench/slow_reader-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import grpc

from bench.common import save, seqserve_server, table
from seqserve.v1 import common_pb2, tagging_pb2, tagging_pb2_grpc, translation_pb2, translation_pb2_grpc


async def push_without_reading(stub: tagging_pb2_grpc.TaggingStub, messages: int, sent: list[int]) -> None:
    call = stub.TagStream(timeout=600)
    await call.write(tagging_pb2.TagStreamRequest(model=common_pb2.ModelSelector(arch="lstm")))
    for i in range(messages):
        await call.write(tagging_pb2.TagStreamRequest(tokens=tagging_pb2.Tokens(tokens=["word"])))
        sent[0] += 1
    await call.done_writing()


async def run(target: str, server, streams: int, messages: int) -> dict[str, object]:
    samples: list[tuple[float, int, float]] = []
    sent = [0]
    async with grpc.aio.insecure_channel(target) as channel:
        tagging = tagging_pb2_grpc.TaggingStub(channel)
        translation = translation_pb2_grpc.TranslationStub(channel)
        unread = [translation.TranslateStream(translation_pb2.TranslateRequest(
            text="the light of the earth " * 20, model=common_pb2.ModelSelector(arch="gru"), beam_size=4),
            timeout=600) for _ in range(streams)]
        pushers = [asyncio.create_task(push_without_reading(tagging, messages, sent)) for _ in range(streams)]
        start = time.monotonic()
        while not all(p.done() for p in pushers) and time.monotonic() - start < 60:
            samples.append((time.monotonic() - start, sent[0], server.memory_mb()))
            await asyncio.sleep(1)
        stalled = not all(p.done() for p in pushers)
        for p in pushers:
            p.cancel()
        for call in unread:
            call.cancel()
    return {"samples": samples, "stalled_by_flow_control": stalled}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--streams", type=int, default=20)
    p.add_argument("--messages", type=int, default=5000)
    p.add_argument("--repository", type=Path, default=Path("models"))
    args = p.parse_args()
    with seqserve_server(args.repository) as server:
        before = server.memory_mb()
        result = asyncio.run(run(server.target, server, args.streams, args.messages))
        after = server.memory_mb()
    rows = [[f"{t:.0f}", n, mb] for t, n, mb in result["samples"]]
    print(table(["second", "messages sent", "server memory MB"], rows))
    print(f"memory before {before:.0f} MB, after the clients left {after:.0f} MB; the senders "
          + ("were held back by flow control" if result["stalled_by_flow_control"] else "sent everything"))
    print(f"wrote {save('slow_reader', {'args': vars(args) | {'repository': str(args.repository)}, **result})}")


if __name__ == "__main__":
    main()
