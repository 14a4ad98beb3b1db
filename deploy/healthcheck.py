"""Container healthcheck: exit 0 only when grpc.health.v1 answers SERVING.

Usage: seqserve-healthcheck [SERVICE] — the server's overall health by default,
or one service's (e.g. seqserve.v1.Sentiment). It asks this container's own gRPC
port (SEQSERVE_GRPC_PORT) and needs nothing but grpcio, which the server image
has anyway. The plain-process stack (deploy/stack.py) waits with ``check`` too.

A server with TLS (SEQSERVE_TLS_CERT_FILE set) is asked over TLS, trusting
SEQSERVE_HEALTHCHECK_CA_FILE (default: the server's own certificate file, enough
for a self-signed one); with mutual TLS (SEQSERVE_TLS_CLIENT_CA_FILE) it presents
SEQSERVE_HEALTHCHECK_CERT_FILE and _KEY_FILE. SEQSERVE_HEALTHCHECK_TLS_NAME is
the name to expect in the certificate when it does not cover 127.0.0.1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _channel(target: str, env: dict[str, str]) -> grpc.Channel:
    server_cert = env.get("SEQSERVE_TLS_CERT_FILE")
    if not server_cert:
        return grpc.insecure_channel(target)
    read = lambda name: Path(name).read_bytes()  # noqa: E731
    mutual = bool(env.get("SEQSERVE_TLS_CLIENT_CA_FILE"))
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(env.get("SEQSERVE_HEALTHCHECK_CA_FILE") or server_cert),
        private_key=read(env["SEQSERVE_HEALTHCHECK_KEY_FILE"]) if mutual else None,
        certificate_chain=read(env["SEQSERVE_HEALTHCHECK_CERT_FILE"]) if mutual else None,
    )
    name = env.get("SEQSERVE_HEALTHCHECK_TLS_NAME")
    return grpc.secure_channel(target, credentials, [("grpc.ssl_target_name_override", name)] if name else None)


def check(target: str, service: str = "", timeout: float = 3.0, env: dict[str, str] | None = None) -> str:
    """The serving status name at ``target``, or the gRPC error code's name."""
    try:
        with _channel(target, env if env is not None else {}) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
    except grpc.RpcError as exc:
        return exc.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(argv: list[str]) -> int:
    service = argv[0] if argv else ""
    target = f"127.0.0.1:{os.environ.get('SEQSERVE_GRPC_PORT', '50051')}"
    status = check(target, service, env=dict(os.environ))
    print(f"{target} {service or '(server)'}: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
