"""Container healthcheck: exit 0 only when grpc.health.v1 answers SERVING.

Usage: seqserve-healthcheck [SERVICE] — the server's overall health by default,
or one service's (e.g. seqserve.v1.Sentiment). It asks this container's own gRPC
port (SEQSERVE_GRPC_PORT) and needs nothing but grpcio, which the server image
has anyway. The plain-process stack (deploy/stack.py) waits with ``check`` too.
"""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(target: str, service: str = "", timeout: float = 3.0) -> str:
    """The serving status name at ``target``, or the gRPC error code's name."""
    try:
        with grpc.insecure_channel(target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
    except grpc.RpcError as exc:
        return exc.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(argv: list[str]) -> int:
    service = argv[0] if argv else ""
    target = f"127.0.0.1:{os.environ.get('SEQSERVE_GRPC_PORT', '50051')}"
    status = check(target, service)
    print(f"{target} {service or '(server)'}: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
