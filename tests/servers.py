"""Running a real seqserve server as a child process on loopback ports, for tests."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]

# The serving path must never need torch (nor onnx, a training-side package):
# every test server runs with both made unimportable.
_SERVE_WITHOUT_TRAINING_PACKAGES = (
    "import sys; sys.modules['torch'] = None; sys.modules['onnx'] = None; "
    "from service.server import main; main()"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python -m service`` with the given settings; ``start`` waits for SERVING
    (over TLS with ``credentials``, for a server with TLS settings)."""

    def __init__(
        self, repository: Path, log_path: Path, credentials: grpc.ChannelCredentials | None = None, **settings: str
    ) -> None:
        self.credentials = credentials
        self.grpc_port = free_port()
        self.metrics_port = free_port()
        self.target = f"127.0.0.1:{self.grpc_port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.log_path = log_path
        self.env = {
            **os.environ,
            "SEQSERVE_HOST": "127.0.0.1",
            "SEQSERVE_GRPC_PORT": str(self.grpc_port),
            "SEQSERVE_METRICS_PORT": str(self.metrics_port),
            "SEQSERVE_MODEL_REPOSITORY": str(repository),
            **{f"SEQSERVE_{k.upper()}": v for k, v in settings.items()},
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self._signalled = False

    def start(self, timeout: float = 60.0, expect_serving: bool = True) -> "ServerProcess":
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SERVE_WITHOUT_TRAINING_PACKAGES], env=self.env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )
        if expect_serving:
            self.wait_for_health(health_pb2.HealthCheckResponse.SERVING, timeout)
        return self

    def wait_for_health(self, status: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        channel = (
            grpc.secure_channel(self.target, self.credentials) if self.credentials else grpc.insecure_channel(self.target)
        )
        with channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.logs()}")
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == status:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        raise TimeoutError(f"health never reached {status} in {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self._signalled = True
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None:
            return 0
        # A test that already signalled is waiting for that shutdown: a second
        # SIGTERM could land after the server restored default handlers on exit.
        if self.proc.poll() is None and not self._signalled:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._log.close()
        return code

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ----------------------------------------------------------------------------- asking a running server


def error_of(fn) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value.code(), info.value.details()


def scrape(server: ServerProcess) -> str:
    return urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"{re.escape(name)}\{{(.*)\}} (\S+)$", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            total += float(m.group(2))
    return total


def wait_for_metric(server: ServerProcess, name: str, at_least: float, timeout: float = 20, **labels: str) -> float:
    # The server updates stream metrics as the stream's task unwinds, a moment after the
    # client saw the end: poll as a scraper would.
    deadline = time.monotonic() + timeout
    while True:
        value = metric(scrape(server), name, **labels)
        if value >= at_least or time.monotonic() > deadline:
            return value
        time.sleep(0.05)
