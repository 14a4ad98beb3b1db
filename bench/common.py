"""What every benchmark shares: a closed-loop load generator, the servers it drives, and the report.

Load: ``concurrency`` coroutines on one grpc.aio channel each keep one call in flight
for ``seconds`` after a warm-up; latency is measured per call in the client. Client and
server share the machine, as they did for the limits the issue quotes, so every
number here is "on this machine, client included" and only ratios between runs made
the same way mean much.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "runs" / "bench"


@dataclass
class LoadResult:
    concurrency: int
    calls: int
    errors: int
    seconds: float
    per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


@contextmanager
def cpu_steal() -> Iterator[dict[str, float]]:
    """The share of the machine's CPU time the hypervisor gave to others while the block
    ran (``steal`` in /proc/stat; 0 on bare metal), in ``["percent"]`` once it ends: a
    virtual machine's neighbours can slow a run down, and this says when they did."""
    def read() -> tuple[int, int]:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
        return ticks[7] if len(ticks) > 7 else 0, sum(ticks[:8])

    share: dict[str, float] = {}
    steal0, total0 = read()
    try:
        yield share
    finally:
        steal1, total1 = read()
        share["percent"] = 100 * (steal1 - steal0) / max(1, total1 - total0)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def closed_loop(
    call: Callable[[], Awaitable[object]], concurrency: int, seconds: float, warmup: float = 1.0
) -> LoadResult:
    """Keep ``concurrency`` calls in flight; latencies of calls started after the warm-up."""
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + seconds

    async def worker() -> None:
        nonlocal errors
        while (t0 := time.perf_counter()) < stop_at:
            try:
                await call()
            except grpc.aio.AioRpcError:
                if t0 >= measure_from:
                    errors += 1
                continue
            if t0 >= measure_from:
                latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    ms = sorted(x * 1000 for x in latencies)
    return LoadResult(concurrency, len(ms), errors, seconds, len(ms) / seconds,
                      percentile(ms, 0.5), percentile(ms, 0.95), percentile(ms, 0.99))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(target: str, ready: Callable[[grpc.Channel], bool], what: str, timeout: float = 120.0) -> None:
    """Poll ``ready(channel)`` until it is true; an RPC error counts as not yet."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        while time.monotonic() < deadline:
            try:
                if ready(channel):
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"{target} not {what} after {timeout:.0f}s")


def wait_serving(target: str, timeout: float = 120.0) -> None:
    serving = health_pb2.HealthCheckResponse.SERVING
    wait_until(target, lambda ch: health_pb2_grpc.HealthStub(ch).Check(
        health_pb2.HealthCheckRequest(), timeout=1).status == serving, "SERVING", timeout)


@dataclass
class RunningServer:
    target: str
    pid: int

    def memory_mb(self) -> float:
        """The server's memory now: proportional set size summed over it and its decode
        processes (PSS, so pages the workers share are counted once, not per process)."""
        return sum(_pss_kb(pid) for pid in _tree(self.pid)) / 1024

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU time used so far (user + system): by the server's own process, and by its
        descendants (the decode processes and the forkserver that starts them)."""
        server, *below = _tree(self.pid)
        return _cpu_s(server), sum(map(_cpu_s, below))


def _cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # the name before ")" may hold spaces
    except OSError:  # it exited meanwhile
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """A process's children (Linux lists them per thread)."""
    return [int(c) for t in os.listdir(f"/proc/{pid}/task")
            for c in open(f"/proc/{pid}/task/{t}/children").read().split()]


def _tree(pid: int) -> list[int]:
    """A process and its descendants."""
    try:
        below = children(pid)
    except OSError:  # it exited meanwhile
        return []
    return [pid] + [d for c in below for d in _tree(c)]


def _pss_kb(pid: int) -> int:
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@contextmanager
def seqserve_server(repository: Path, **settings: str) -> Iterator[RunningServer]:
    """A seqserve server process on a free port."""
    port = free_port()
    env = {
        **os.environ, "SEQSERVE_HOST": "127.0.0.1", "SEQSERVE_GRPC_PORT": str(port), "SEQSERVE_METRICS_PORT": "0",
        "SEQSERVE_MODEL_REPOSITORY": str(repository), "SEQSERVE_LOG_LEVEL": "WARNING",
        **{f"SEQSERVE_{k.upper()}": v for k, v in settings.items()},
    }
    with _process([sys.executable, "-m", "service"], env) as proc:
        target = f"127.0.0.1:{port}"
        wait_serving(target)
        yield RunningServer(target, proc.pid)


@contextmanager
def echo_server() -> Iterator[str]:
    """The trivial gRPC server the service is compared with (bench/echo.py)."""
    port = free_port()
    with _process([sys.executable, "-m", "bench.echo", "--port", str(port)], dict(os.environ)):
        target = f"127.0.0.1:{port}"
        wait_serving(target)
        yield target


@contextmanager
def _process(cmd: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def machine() -> dict[str, object]:
    """Where the numbers came from."""
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
        "load_avg_at_start": os.getloadavg(), "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2, default=_plain) + "\n")
    return path


def _plain(value: object) -> object:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)  # type: ignore[arg-type]
    raise TypeError(f"not JSON: {type(value).__name__}")


def table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[f"{c:.2f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda r: "  ".join(c.rjust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def median_ms(fn: Callable[[], object], repeat: int = 200) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)
