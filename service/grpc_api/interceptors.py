"""The two interceptors every RPC passes through.

``MetricsInterceptor`` (outermost) times each RPC and counts it by status code.
``ErrorInterceptor`` turns a ``SeqserveError`` into its gRPC status and any
other exception into INTERNAL, in this one place, so no handler can forget.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from service.errors import InvalidArgument, ResourceExhausted, SeqserveError
from service.metrics import Metrics

log = logging.getLogger(__name__)

# The Open Inference Protocol serves every task: its ModelInfer relabels itself
# with the model's task once resolved; its other calls count under "kserve".
_TASK_OF_SERVICE = {
    "Sentiment": "sentiment", "Tagging": "tagging", "Translation": "translation", "GRPCInferenceService": "kserve",
}


@dataclass
class CallLabels:
    """Labels of the current RPC; a servicer fills in ``arch`` once it has resolved the
    model (and ``task``, where one service serves several tasks)."""

    task: str
    method: str
    arch: str = ""


_current: contextvars.ContextVar[CallLabels] = contextvars.ContextVar("seqserve_call_labels")


def call_labels() -> CallLabels:
    """The labels of the RPC being handled (a throwaway object outside an RPC)."""
    return _current.get(CallLabels("", ""))


def _labels_for(full_method: str) -> CallLabels:
    service, _, method = full_method.lstrip("/").rpartition("/")
    short = service.rpartition(".")[2]
    return CallLabels(_TASK_OF_SERVICE.get(short, short.lower()), method)


Wrap = Callable[[Callable[..., Any], grpc.HandlerCallDetails], Callable[..., Any]]


def rewrap(
    handler: grpc.RpcMethodHandler, wrap_unary: Wrap, wrap_stream: Wrap, details: Any,
    deserializer: Callable[[bytes], Any] | None = None,
) -> Any:
    """The same handler with its behaviour (and, if given, its request deserializer) wrapped,
    whatever its streaming kind."""
    kinds = (
        ("unary_unary", grpc.unary_unary_rpc_method_handler),
        ("stream_unary", grpc.stream_unary_rpc_method_handler),
        ("unary_stream", grpc.unary_stream_rpc_method_handler),
        ("stream_stream", grpc.stream_stream_rpc_method_handler),
    )
    for attr, make in kinds:
        behavior = getattr(handler, attr)
        if behavior is not None:
            # A streaming handler is either an async generator or a coroutine that
            # writes through context.write() (as grpc's own health Watch does).
            wrap = wrap_stream if inspect.isasyncgenfunction(behavior) else wrap_unary
            return make(
                wrap(behavior, details),
                request_deserializer=deserializer or handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler


class _WrappingInterceptor(grpc.aio.ServerInterceptor):
    """Wraps each handler's behaviour with ``_unary`` or ``_stream``.

    A method's wrapped handler is built once and kept: grpcio asks the interceptors
    on every call, and rebuilding it (closures, handler tuples) is per-call Python
    work that the event loop, the service's bottleneck, can do without."""

    def __init__(self) -> None:
        # The last handler seen per method and its wrapping: one entry per method, so an
        # inner interceptor that hands out a fresh handler per call (auth refusing one)
        # costs a rebuild, never memory.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, Any]] = {}

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        kept = self._wrapped.get(details.method)
        if kept is None or kept[0] is not handler:
            wrapped = rewrap(handler, self._unary, self._stream, details, self._deserializer(handler))
            kept = self._wrapped[details.method] = (handler, wrapped)
        return kept[1]

    def _deserializer(self, handler: grpc.RpcMethodHandler) -> Callable[[bytes], Any] | None:
        return None  # the handler's own

    def _unary(self, behavior: Callable[..., Any], details: grpc.HandlerCallDetails) -> Callable[..., Any]:
        raise NotImplementedError

    def _stream(self, behavior: Callable[..., Any], details: grpc.HandlerCallDetails) -> Callable[..., Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class _Undecodable:
    """What a request's bytes became when they were not the method's message."""

    message: str


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    """A deserializer that hands bad bytes on as ``_Undecodable`` instead of raising:
    raised inside grpcio, the client would get UNKNOWN; this way, INVALID_ARGUMENT."""
    owner = getattr(deserialize, "__self__", None)
    name = getattr(getattr(owner, "DESCRIPTOR", None), "full_name", "the method's request message")

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data) if deserialize else data
        except Exception as exc:
            return _Undecodable(f"the request is not a valid {name}: {exc}")

    return parse


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, _Undecodable):
            raise InvalidArgument(request.message)
        yield request


def _check(request: Any) -> Any:
    """A unary request, or a client stream's messages, with bad bytes turned into INVALID_ARGUMENT."""
    if isinstance(request, _Undecodable):
        raise InvalidArgument(request.message)
    return _checked(request) if hasattr(request, "__aiter__") else request


class ErrorInterceptor(_WrappingInterceptor):
    def _deserializer(self, handler: grpc.RpcMethodHandler) -> Callable[[bytes], Any] | None:
        return _tolerant(handler.request_deserializer)

    @staticmethod
    async def _abort(context: grpc.aio.ServicerContext, exc: Exception, method: str) -> None:
        if isinstance(exc, SeqserveError):
            code = grpc.StatusCode[exc.status.name]
            if code is grpc.StatusCode.INTERNAL:
                log.error("%s: %s", method, exc.message)
            await context.abort(code, exc.message)
        log.exception("%s: unexpected error", method, exc_info=exc)
        await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")

    def _unary(self, behavior: Callable[..., Any], details: grpc.HandlerCallDetails) -> Callable[..., Any]:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await behavior(_check(request), context)
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as exc:
                await self._abort(context, exc, details.method)

        return wrapped

    def _stream(self, behavior: Callable[..., Any], details: grpc.HandlerCallDetails) -> Callable[..., Any]:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                async for response in behavior(_check(request), context):
                    yield response
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as exc:
                await self._abort(context, exc, details.method)

        return wrapped


class ConcurrencyInterceptor(_WrappingInterceptor):
    """At most ``limit`` RPCs at once (health excepted, so probes still answer under load);
    the next gets RESOURCE_EXHAUSTED at once. grpcio's own limit answers CANCELLED, which
    tells a client nothing, so the server counts here instead."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self._limit = limit
        self._active = 0

    def _enter(self, details: grpc.HandlerCallDetails) -> bool:
        if details.method.startswith("/grpc.health.v1.Health/"):
            return False
        if self._active >= self._limit:
            raise ResourceExhausted(f"{self._active} calls in progress, the server's limit; retry later")
        self._active += 1
        return True

    def _unary(self, behavior: Callable[..., Any], details: grpc.HandlerCallDetails) -> Callable[..., Any]:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            counted = self._enter(details)
            try:
                return await behavior(request, context)
            finally:
                if counted:
                    self._active -= 1

        return wrapped

    def _stream(self, behavior: Callable[..., Any], details: grpc.HandlerCallDetails) -> Callable[..., Any]:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            counted = self._enter(details)
            try:
                async for response in behavior(request, context):
                    yield response
            finally:
                if counted:
                    self._active -= 1

        return wrapped


class MetricsInterceptor(_WrappingInterceptor):
    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self._m = metrics

    def _record(self, labels: CallLabels, started: float, code: grpc.StatusCode) -> None:
        self._m.request_latency.labels(labels.task, labels.arch, labels.method).observe(
            time.perf_counter() - started
        )
        self._m.requests.labels(labels.task, labels.arch, labels.method, code.name).inc()

    def _unary(self, behavior: Callable[..., Any], details: grpc.HandlerCallDetails) -> Callable[..., Any]:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            labels, started = _labels_for(details.method), time.perf_counter()
            _current.set(labels)  # each RPC runs in its own task, so this stays its own
            in_flight = self._m.in_flight.labels(labels.task)
            in_flight.inc()
            code = grpc.StatusCode.OK
            try:
                return await behavior(request, context)
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except BaseException:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            finally:
                in_flight.dec()
                self._record(labels, started, _code(code))

        return wrapped

    def _stream(self, behavior: Callable[..., Any], details: grpc.HandlerCallDetails) -> Callable[..., Any]:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            labels, started = _labels_for(details.method), time.perf_counter()
            _current.set(labels)  # each RPC runs in its own task, so this stays its own
            in_flight = self._m.in_flight.labels(labels.task)
            in_flight.inc()
            code = grpc.StatusCode.OK
            try:
                async for response in behavior(request, context):
                    yield response
            except (asyncio.CancelledError, GeneratorExit):
                code = grpc.StatusCode.CANCELLED
                raise
            except BaseException:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            finally:
                in_flight.dec()
                self._record(labels, started, _code(code))

        return wrapped


def _code(code: Any) -> grpc.StatusCode:
    # context.code() may hand back the raw integer of the status on some grpcio versions.
    if isinstance(code, grpc.StatusCode):
        return code
    return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
