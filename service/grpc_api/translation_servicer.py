"""Translation servicer: protobuf <-> the translation task, nothing else."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

import grpc

from seqserve.v1 import common_pb2, translation_pb2, translation_pb2_grpc
from service.grpc_api.interceptors import call_labels
from service.tasks.translation import Options, Result, TranslationModel, TranslationTask


def _options(request: translation_pb2.TranslateRequest) -> Options:
    return Options(beam_size=request.beam_size, max_length=request.max_length, n_best=request.n_best)


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    """The call's deadline on the monotonic clock the decode loop reads."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def _response(result: Result, model: TranslationModel) -> translation_pb2.TranslateResponse:
    e = model.entry
    return translation_pb2.TranslateResponse(
        hypotheses=[
            translation_pb2.Hypothesis(
                text=c.text, score=c.score, log_prob=c.log_prob, length=c.length, truncated=c.truncated
            )
            for c in result.candidates
        ],
        model=common_pb2.ModelId(task=e.task, arch=e.arch, version=e.version),
        source_length=result.source_length,
    )


class TranslationServicer(translation_pb2_grpc.TranslationServicer):
    def __init__(self, task: TranslationTask) -> None:
        self._task = task

    async def Translate(
        self, request: translation_pb2.TranslateRequest, context: grpc.aio.ServicerContext
    ) -> translation_pb2.TranslateResponse:
        model = self._task.model(request.model.arch, request.model.version)
        call_labels().arch = model.entry.arch
        result = await self._task.translate(model, request.text, _options(request), _deadline(context))
        return _response(result, model)

    async def TranslateStream(
        self, request: translation_pb2.TranslateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[translation_pb2.TranslateStreamResponse]:
        model = self._task.model(request.model.arch, request.model.version)
        call_labels().arch = model.entry.arch
        events = self._task.stream(model, request.text, _options(request), _deadline(context))
        # aclosing: a cancelled call stops its decoding now, not when the generator is collected.
        async with contextlib.aclosing(events) as pieces:
            async for piece in pieces:
                if isinstance(piece, Result):
                    yield translation_pb2.TranslateStreamResponse(result=_response(piece, model))
                else:
                    yield translation_pb2.TranslateStreamResponse(text=piece)
