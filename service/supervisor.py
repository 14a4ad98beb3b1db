"""Several server processes on one port (``SEQSERVE_PROCESSES``), past the one event loop's ceiling.

Python gRPC serves from one event loop per process, and that loop, not ONNX
Runtime, is the first limit on small requests. With ``PROCESSES`` > 1 this
supervisor starts that many ordinary servers bound to the same port with
SO_REUSEPORT (the kernel spreads new connections over them), each with its own
models and its metrics on ``METRICS_PORT + i``. It passes SIGTERM, SIGINT and
SIGHUP on to all of them; if one exits on its own, it stops the others and exits
non-zero, so the orchestrator restarts the whole server.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

from service.settings import Settings

log = logging.getLogger("seqserve")


def supervise(settings: Settings) -> int:
    if settings.grpc_port == 0:
        log.error("SEQSERVE_PROCESSES > 1 needs a fixed SEQSERVE_GRPC_PORT (the processes share it)")
        return 2
    children = [_start(settings, i) for i in range(settings.processes)]
    log.info("started %d server processes on port %d: pids %s", len(children), settings.grpc_port,
             ", ".join(str(c.pid) for c in children))
    stopping = False

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = stopping or signum in (signal.SIGTERM, signal.SIGINT)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    while any(c.poll() is None for c in children):
        if not stopping and any(c.poll() is not None for c in children):
            gone = next(c for c in children if c.poll() is not None)
            log.error("server process %d exited with %s; stopping the others", gone.pid, gone.returncode)
            forward(signal.SIGTERM, None)
        time.sleep(0.2)
    codes = [c.returncode for c in children]
    return 0 if stopping and all(code == 0 for code in codes) else max(1, *codes)


def _start(settings: Settings, index: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SEQSERVE_PROCESSES": "1",
        "SEQSERVE_REUSE_PORT": "true",
        "SEQSERVE_METRICS_PORT": str(settings.metrics_port + index if settings.metrics_port else 0),
    }
    return subprocess.Popen([sys.executable, "-m", "service"], env=env)
