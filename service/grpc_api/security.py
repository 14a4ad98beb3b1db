"""Transport security and bearer-token auth, from the settings.

TLS (and mutual TLS when a client CA is set) is the server's port credentials;
tokens are checked by one interceptor for every RPC except health, so load
balancers and orchestrators can probe a server without holding a secret.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from service.grpc_api.interceptors import rewrap
from service.settings import Settings

OPEN_PREFIXES = ("/grpc.health.v1.Health/",)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{what} {path}: {exc.strerror or exc}") from exc


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials for the port, or None for plaintext."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    key = _read(settings.tls_key_file, "SEQSERVE_TLS_KEY_FILE")
    cert = _read(settings.tls_cert_file, "SEQSERVE_TLS_CERT_FILE")
    ca = _read(settings.tls_client_ca_file, "SEQSERVE_TLS_CLIENT_CA_FILE") if settings.tls_client_ca_file else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


def load_tokens(path: Path) -> list[bytes]:
    """One token per line; blank lines and ``#`` comments are skipped."""
    lines = _read(path, "SEQSERVE_AUTH_TOKENS_FILE").decode("utf-8").splitlines()
    tokens = [line.strip().encode() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not tokens:
        raise ValueError(f"SEQSERVE_AUTH_TOKENS_FILE {path}: no token in it")
    return tokens


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Every RPC but health needs metadata ``authorization: Bearer <token>``."""

    def __init__(self, tokens: list[bytes]) -> None:
        self._tokens = tokens

    def _problem(self, metadata: Any) -> str:
        value = next((v for k, v in metadata or () if k == "authorization"), None)
        if value is None:
            return "this server needs a bearer token: send metadata 'authorization: Bearer <token>'"
        scheme, _, token = (value.decode() if isinstance(value, bytes) else value).partition(" ")
        if scheme.lower() != "bearer" or not token:
            return "the authorization metadata must be 'Bearer <token>'"
        # Compare with every token, in constant time, so timing says nothing about them.
        if not any(hmac.compare_digest(token.strip().encode(), t) for t in self._tokens):
            return "the bearer token is not valid"
        return ""

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method.startswith(OPEN_PREFIXES):
            return handler
        problem = self._problem(details.invocation_metadata)
        if not problem:
            return handler
        return rewrap(handler, _deny_unary(problem), _deny_stream(problem), details)


def _deny_unary(problem: str) -> Callable[..., Any]:
    def wrap(behavior: Callable[..., Any], details: grpc.HandlerCallDetails) -> Callable[..., Any]:
        async def denied(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, problem)

        return denied

    return wrap


def _deny_stream(problem: str) -> Callable[..., Any]:
    def wrap(behavior: Callable[..., Any], details: grpc.HandlerCallDetails) -> Callable[..., Any]:
        async def denied(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, problem)
            yield  # an async generator, like the handler it stands in for

        return denied

    return wrap
