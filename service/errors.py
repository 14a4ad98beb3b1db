"""The one error hierarchy of the server.

Task and runtime code raise these; the gRPC layer maps ``status`` to a gRPC
status code in exactly one place (``grpc_api.interceptors``), so no RPC can
forget to. ``Status`` names equal gRPC's code names, without importing gRPC here.
"""

from __future__ import annotations

import enum


class Status(enum.Enum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    INTERNAL = "INTERNAL"


class SeqserveError(Exception):
    """An error with the status a client should see and a message a person understands."""

    status: Status = Status.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(SeqserveError):
    status = Status.INVALID_ARGUMENT


class NotFound(SeqserveError):
    status = Status.NOT_FOUND


class ResourceExhausted(SeqserveError):
    status = Status.RESOURCE_EXHAUSTED


class Unavailable(SeqserveError):
    status = Status.UNAVAILABLE


class InferenceError(SeqserveError):
    """ONNX Runtime failed on a request: the request fails, the server does not."""

    status = Status.INTERNAL
