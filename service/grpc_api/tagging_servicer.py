"""Tagging servicer: protobuf <-> the tagging task, nothing else."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc

from seqserve.v1 import common_pb2, tagging_pb2, tagging_pb2_grpc
from service.errors import InvalidArgument
from service.grpc_api.interceptors import call_labels
from service.tasks.tagging import (
    FlushIn,
    SelectModel,
    StreamEvent,
    StreamStarted,
    Tagged,
    TaggingTask,
    TextIn,
    TokensIn,
)

_CANCEL_SETTLE_S = 0.05
_MODES = {"causal": tagging_pb2.StreamStarted.IMMEDIATE, "lookahead": tagging_pb2.StreamStarted.LOOKAHEAD}


def _tagged(tokens: list[Tagged]) -> tagging_pb2.TaggedSentence:
    sentence = tagging_pb2.TaggedSentence()
    add = sentence.tokens.add  # half the cost of building each TaggedToken and passing the list
    for t in tokens:
        add(index=t.index, token=t.token, tag=t.tag, probability=t.probability)
    return sentence


def _sentence(s: tagging_pb2.Sentence) -> str | list[str]:
    kind = s.WhichOneof("input")
    if kind is None:
        raise InvalidArgument("a sentence needs text or tokens")
    return s.text if kind == "text" else list(s.tokens.tokens)


def _started(s: StreamStarted) -> tagging_pb2.StreamStarted:
    e = s.entry
    return tagging_pb2.StreamStarted(
        model=common_pb2.ModelId(task=e.task, arch=e.arch, version=e.version),
        mode=_MODES[s.mode],
        lookahead=s.lookahead,
    )


async def _events(
    requests: AsyncIterator[tagging_pb2.TagStreamRequest], context: grpc.aio.ServicerContext
) -> AsyncIterator[StreamEvent]:
    async for msg in requests:
        kind = msg.WhichOneof("kind")
        if kind == "model":
            yield SelectModel(msg.model.arch, msg.model.version)
        elif kind == "tokens":
            yield TokensIn(list(msg.tokens.tokens))
        elif kind == "text":
            yield TextIn(msg.text)
        elif kind == "flush":
            yield FlushIn()
        else:
            raise InvalidArgument("empty stream message: set one of model, tokens, text or flush")
    # A client's cancel also ends the requests, and grpc.aio cancels this call a few
    # ms later, if at all before the call ends (measured: 5 ms in about 2 of 3 cases,
    # else never). So: tag what waits at once, then give a cancel a moment to arrive
    # before the stream counts as completed. The state is freed either way.
    yield FlushIn()
    await asyncio.sleep(_CANCEL_SETTLE_S)


class TaggingServicer(tagging_pb2_grpc.TaggingServicer):
    def __init__(self, task: TaggingTask) -> None:
        self._task = task

    async def Tag(self, request: tagging_pb2.TagRequest, context: grpc.aio.ServicerContext) -> tagging_pb2.TagResponse:
        model = self._task.model(request.model.arch, request.model.version)
        call_labels().arch = model.entry.arch
        tagged = await self._task.tag(model, [_sentence(s) for s in request.sentences])
        return tagging_pb2.TagResponse(
            sentences=[_tagged(t) for t in tagged],
            model=common_pb2.ModelId(task=model.entry.task, arch=model.entry.arch, version=model.entry.version),
        )

    async def TagStream(
        self, requests: AsyncIterator[tagging_pb2.TagStreamRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[tagging_pb2.TagStreamResponse]:
        # aclosing: a cancelled call closes the task's stream at once, freeing its
        # state now rather than whenever the garbage collector finalizes it.
        async with contextlib.aclosing(self._task.stream(_events(requests, context))) as outputs:
            async for out in outputs:
                if isinstance(out, StreamStarted):
                    call_labels().arch = out.entry.arch
                    yield tagging_pb2.TagStreamResponse(started=_started(out))
                elif out:
                    yield tagging_pb2.TagStreamResponse(tags=_tagged(out))
