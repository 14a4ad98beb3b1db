"""The interceptors' handler cache: one wrapping per method, reused, and bounded."""

from __future__ import annotations

import grpc
from prometheus_client import CollectorRegistry

from service.grpc_api.interceptors import MetricsInterceptor
from service.metrics import Metrics


class Details:
    method = "/seqserve.v1.Sentiment/Classify"
    invocation_metadata = ()


async def behaviour(request, context):
    return request


async def test_a_method_is_wrapped_once_while_its_handler_stays_the_same():
    interceptor = MetricsInterceptor(Metrics(CollectorRegistry()))
    handler = grpc.unary_unary_rpc_method_handler(behaviour)

    async def same(details):
        return handler

    first = await interceptor.intercept_service(same, Details())
    assert await interceptor.intercept_service(same, Details()) is first
    assert first.unary_unary is not behaviour  # wrapped


async def test_a_fresh_inner_handler_per_call_is_wrapped_each_time_and_never_piles_up():
    # What the auth interceptor hands out when it refuses a call: a new handler every time.
    interceptor = MetricsInterceptor(Metrics(CollectorRegistry()))

    async def fresh(details):
        return grpc.unary_unary_rpc_method_handler(behaviour)

    wrapped = [await interceptor.intercept_service(fresh, Details()) for _ in range(50)]
    assert wrapped[0] is not wrapped[1]
    assert len(interceptor._wrapped) == 1
