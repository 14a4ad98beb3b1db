"""The compose stack as plain processes on loopback ports: no container engine.

Each service runs the command docker-compose.yml gives it, with the environment
it gives it and the same deploy/nginx.conf and deploy/prometheus.yml; only the
container addresses become loopback ports and container paths files in a work
folder:

  server-N    python -m service       SEQSERVE_* from compose; host, ports, repository local
  nginx       Debian's nginx          deploy/nginx.conf, upstreams -> the replicas
  prometheus  Debian's prometheus     deploy/prometheus.yml, targets -> the replicas

    python -m deploy.stack --models models      # until Ctrl-C; prints the endpoints
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy import composefile
from deploy.healthcheck import check

DEPLOY = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Process:
    """One service's process, its output in ``<workdir>/<name>.log``."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=composefile.ROOT, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (the signal compose sends), SIGKILL after ``timeout``."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Replica:
    service: str
    grpc_port: int
    metrics_port: int
    process: Process

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"


def swap(text: str, swaps: dict[str, str], what: str) -> str:
    """Replace each key by its value; a key missing from ``text`` is an error, so
    a config that changed shape fails here instead of running half-swapped."""
    for old, new in swaps.items():
        if old not in text:
            raise ValueError(f"{what} has no {old!r} to point at the plain-process stack")
        text = text.replace(old, new)
    return text


def swap_options(argv: list[str], values: dict[str, str], what: str) -> list[str]:
    """Set option values in a compose command: ``-c X`` and ``--opt=X`` forms."""
    out, seen = list(argv), set()
    for i, arg in enumerate(argv):
        name = arg.split("=", 1)[0]
        if "=" in arg and name in values:
            out[i] = f"{name}={values[name]}"
            seen.add(name)
        elif arg in values and i + 1 < len(argv):
            out[i + 1] = values[arg]
            seen.add(arg)
    missing = set(values) - seen
    if missing:
        raise ValueError(f"{what} command {argv} has no {sorted(missing)}")
    return out


def _published_port(service: dict[str, Any]) -> int:
    return int(service["ports"][0]["target"])


@dataclass
class PlainStack:
    models: Path
    workdir: Path
    compose_files: tuple[Path, ...] = (composefile.COMPOSE_FILE,)
    replicas: list[Replica] = field(default_factory=list)
    nginx: Process | None = None
    prometheus: Process | None = None
    grpc_port: int = 0
    prometheus_port: int = 0

    @property
    def grpc_target(self) -> str:
        """nginx's gRPC address: the stack's one entry point, as in compose."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    def start(self, timeout: float = 60.0) -> "PlainStack":
        model = composefile.config(*self.compose_files)
        services = model["services"]
        base_env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
        for name in composefile.server_services(model):
            env = {**base_env, **{k: v for k, v in services[name]["environment"].items() if v is not None},
                   "SEQSERVE_HOST": "127.0.0.1", "SEQSERVE_GRPC_PORT": str(free_port()),
                   "SEQSERVE_METRICS_PORT": str(free_port()), "SEQSERVE_MODEL_REPOSITORY": str(self.models)}
            argv = [sys.executable if services[name]["command"][0] == "python" else services[name]["command"][0],
                    *services[name]["command"][1:]]
            proc = Process(name, argv, env, self.workdir / f"{name}.log")
            self.replicas.append(Replica(name, int(env["SEQSERVE_GRPC_PORT"]), int(env["SEQSERVE_METRICS_PORT"]), proc))
            proc.start()
        for replica in self.replicas:
            self._wait(replica.process, lambda r=replica: check(r.target, timeout=1) == "SERVING", timeout)

        self.grpc_port = free_port()
        self.nginx = self._nginx(services, model)
        self._wait(self.nginx, lambda: check(self.grpc_target, timeout=1) == "SERVING", timeout)
        self.prometheus_port = free_port()
        self.prometheus = self._prometheus(services, model)
        self._wait(self.prometheus, lambda: _http_ok(f"{self.prometheus_url}/-/ready"), timeout)
        return self

    def _nginx(self, services: dict[str, Any], model: dict[str, Any]) -> Process:
        container_port = _published_port(services["nginx"])
        swaps = {f"{r.service}:{model['services'][r.service]['environment']['SEQSERVE_GRPC_PORT']}": r.target
                 for r in self.replicas}
        text = swap((DEPLOY / "nginx.conf").read_text(), swaps, "deploy/nginx.conf")
        text, listens = re.subn(rf"\blisten {container_port}\b", f"listen 127.0.0.1:{self.grpc_port}", text)
        if not listens:
            raise ValueError(f"deploy/nginx.conf does not listen on {container_port}, the port compose publishes")
        prefix = self.workdir / "nginx"
        prefix.mkdir(exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(text)
        argv = swap_options(services["nginx"]["command"], {"-c": str(conf), "-p": str(prefix)}, "nginx")
        return self._run("nginx", argv)

    def _prometheus(self, services: dict[str, Any], model: dict[str, Any]) -> Process:
        container_port = _published_port(services["prometheus"])
        swaps = {f"{r.service}:{model['services'][r.service]['environment']['SEQSERVE_METRICS_PORT']}":
                 f"127.0.0.1:{r.metrics_port}" for r in self.replicas}
        swaps[f"localhost:{container_port}"] = f"127.0.0.1:{self.prometheus_port}"
        conf = self.workdir / "prometheus.yml"
        conf.write_text(swap((DEPLOY / "prometheus.yml").read_text(), swaps, "deploy/prometheus.yml"))
        argv = swap_options(services["prometheus"]["command"], {
            "--config.file": str(conf),
            "--storage.tsdb.path": str(self.workdir / "prometheus-data"),
            "--web.listen-address": f"127.0.0.1:{self.prometheus_port}",
        }, "prometheus")
        return self._run("prometheus", argv)

    def _run(self, name: str, argv: list[str]) -> Process:
        env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
        proc = Process(name, argv, env, self.workdir / f"{name}.log")
        proc.start()
        return proc

    @staticmethod
    def _wait(proc: Process, ready: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited:\n{proc.logs()}")
            if ready():
                return
            time.sleep(0.2)
        raise TimeoutError(f"{proc.name} not ready after {timeout}s:\n{proc.logs()}")

    def processes(self) -> list[Process]:
        return [r.process for r in self.replicas] + [p for p in (self.nginx, self.prometheus) if p]

    def stop(self) -> None:
        """Front to back, as `docker compose down` does: nothing left running."""
        for proc in reversed(self.processes()):
            proc.stop()

    def __enter__(self) -> "PlainStack":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=composefile.ROOT / "models", help="the model repository")
    parser.add_argument("--workdir", type=Path, help="configs, logs and Prometheus data (default: a temp folder)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="seqserve-stack-"))
    workdir.mkdir(parents=True, exist_ok=True)
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with PlainStack(args.models.resolve(), workdir) as stack:
        print(f"gRPC (nginx):  {stack.grpc_target}")
        for r in stack.replicas:
            print(f"{r.service}:      {r.target}  metrics {r.metrics_url}")
        print(f"Prometheus:    {stack.prometheus_url}")
        print(f"logs:          {workdir}")
        while not stopping and all(p.alive() for p in stack.processes()):
            time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
