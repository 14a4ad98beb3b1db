"""The compose stack on a real Docker engine: Debian's docker.io run here as a plain
process (deploy/engine.sh), images built FROM a debootstrap base
(deploy/make-base-image.sh), `docker compose up` of docker-compose.yml, calls
through nginx's published port on loopback, Prometheus asked what it scraped, and
a teardown that leaves no container, network, volume or engine process behind.

The servers get tiny fake models through deploy/compose.host-models.yml (the
trainer's slot copies them into the models volume); the trainer image is built
and checked for its CPU torch. SEQSERVE_DOCKER_TRAIN=1 adds the stack as it
ships, trainer training the quick models and all (minutes).

The engine root (SEQSERVE_DOCKER_ROOT, default ~/.cache/seqserve/docker) keeps
images and the builds' pip cache for the next run.
"""

from __future__ import annotations

import csv
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy import composefile
from deploy.stack import free_port
from seqserve.client import Client
from seqserve.manifest import ARCHS
from tests.servers import ROOT
from tests.stack_checks import (
    calls_by_instance, dashboard_gaps, drive_traffic, expected_names, fake_repository, reported, require, tag_traffic,
    wait_for,
)

pytestmark = pytest.mark.docker

ENGINE_ROOT = Path(os.environ.get("SEQSERVE_DOCKER_ROOT", Path.home() / ".cache" / "seqserve" / "docker"))
BASE_IMAGE = "seqserve-base:bookworm"
SERVICES = ["trainer", "server-1", "server-2", "nginx", "prometheus"]  # Grafana has no image here


def _run(command: list[str], env: dict[str, str], log: Path | None = None, timeout: float = 1800) -> str:
    out = open(log, "ab") if log else subprocess.PIPE
    try:
        result = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, cwd=ROOT)
    finally:
        if log:
            out.close()
    text = log.read_text(errors="replace")[-6000:] if log else result.stdout.decode(errors="replace")
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{text}"
    return text


def _engine_processes() -> dict[int, str]:
    """Processes of this engine: dockerd, containerd and the shims name its root."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(ENGINE_ROOT) in args:
                found[int(entry.name)] = args
    return found


def _children_of(pid: int) -> set[int]:
    """Every descendant of ``pid`` (docker-proxy names no root in its arguments)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@dataclass
class Engine:
    env: dict[str, str]
    started_here: bool

    def docker(self, *args: str) -> str:
        return _run(["docker", *args], self.env)

    def stop(self) -> None:
        if self.started_here:
            _run(["bash", str(ROOT / "deploy" / "engine.sh"), "stop", str(ENGINE_ROOT)], self.env)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    require("dockerd", "docker", "debootstrap", compose=True)
    env = {**os.environ, "DOCKER_HOST": f"unix://{ENGINE_ROOT}/docker.sock"}
    running_before = bool(_engine_processes())
    _run(["bash", str(ROOT / "deploy" / "engine.sh"), "start", str(ENGINE_ROOT)], env)
    log = tmp_path_factory.mktemp("docker") / "base-image.log"
    _run(["bash", str(ROOT / "deploy" / "make-base-image.sh"), BASE_IMAGE], env, log)
    engine = Engine(env, started_here=not running_before)
    yield engine
    engine.stop()


@dataclass
class Stack:
    engine: Engine
    project: str
    env: dict[str, str]
    files: tuple[Path, ...]
    log: Path
    is_down: bool = False

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.env['SEQSERVE_STACK_GRPC_PORT']}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.env['SEQSERVE_STACK_PROMETHEUS_PORT']}"

    def compose(self, *args: str, timeout: float = 1800) -> str:
        return _run([*composefile.compose_command(*self.files, project=self.project), *args], self.env, self.log, timeout)

    def up(self, wait_s: int = 300) -> None:
        try:
            self.compose("up", "--build", "--detach", "--wait", "--wait-timeout", str(wait_s), *SERVICES, timeout=wait_s + 900)
        except AssertionError:
            self.compose("logs", "--no-color", "--tail", "50")
            raise

    def down(self) -> None:
        if not self.is_down:
            self.compose("down", "--volumes", "--remove-orphans", "--timeout", "30")
            self.is_down = True

    def leftovers(self) -> dict[str, str]:
        label = f"label=com.docker.compose.project={self.project}"
        found = {
            "containers": self.engine.docker("ps", "--all", "--quiet", "--filter", label),
            "networks": self.engine.docker("network", "ls", "--quiet", "--filter", label),
            "volumes": self.engine.docker("volume", "ls", "--quiet", "--filter", label),
        }
        return {kind: ids.strip() for kind, ids in found.items() if ids.strip()}


def _stack(engine: Engine, tmp: Path, name: str, files: tuple[Path, ...], **env: str) -> Stack:
    return Stack(engine, f"seqserve-test-{name}-{os.getpid()}", {
        **engine.env,
        "SEQSERVE_STACK_BASE_IMAGE": BASE_IMAGE,
        "SEQSERVE_STACK_GRPC_PORT": str(free_port()),
        "SEQSERVE_STACK_PROMETHEUS_PORT": str(free_port()),
        **env,
    }, files, tmp / f"compose-{name}.log")


@pytest.fixture(scope="module")
def stack(engine: Engine, model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("docker")
    models = fake_repository(tmp / "models", model_repository)
    running = _stack(engine, tmp, "fake", (composefile.COMPOSE_FILE, ROOT / "deploy" / "compose.host-models.yml"),
                     SEQSERVE_STACK_MODELS_DIR=str(models))
    try:
        running.up()
        yield running
    finally:
        running.down()  # unless the teardown test did


def test_every_architecture_answers_through_nginx(stack: Stack) -> None:
    with Client(stack.grpc_target) as client:
        assert {m.arch for m in client.list_models("sentiment") if m.ready} == set(ARCHS)
        for arch in ARCHS:
            result = client.classify("awful bad film", arch=arch)
            assert (result.label, result.model) == ("negative", f"sentiment/{arch}/1")
        assert {m.arch for m in client.list_models("tagging") if m.ready} == set(ARCHS)
        for arch in ARCHS:
            tag_traffic(client, arch)  # unary, and a stream through nginx's HTTP/2 proxy


def test_calls_through_nginx_reach_every_replica(stack: Stack) -> None:
    drive_traffic(stack.grpc_target)
    replicas = {"server-1:8000", "server-2:8000"}
    # A scrape may land while the traffic runs: wait until Prometheus has at least what was sent.
    wait_for("every replica's calls in Prometheus", lambda: (
        (c := calls_by_instance(stack.prometheus_url)).keys() == replicas and all(c.values())
        and sum(c.values()) >= len(ARCHS) * 7, c))


def test_every_dashboard_query_has_series_for_every_architecture(stack: Stack) -> None:
    drive_traffic(stack.grpc_target)
    wait_for("dashboard queries without series", lambda: (not (gaps := dashboard_gaps(stack.prometheus_url)), gaps))


def test_the_server_image_has_no_torch(stack: Stack) -> None:
    probe = "import importlib.util as u; print(u.find_spec('torch') is None, u.find_spec('onnxruntime') is not None)"
    assert stack.compose("exec", "-T", "server-1", "python", "-c", probe).strip().endswith("True True")


def test_the_trainer_image_gets_the_cpu_build_of_torch(stack: Stack) -> None:
    _run(["bash", str(ROOT / "deploy" / "stage-wheels.sh")], stack.env)
    shipped = Stack(stack.engine, stack.project, stack.env, (composefile.COMPOSE_FILE,), stack.log)
    shipped.compose("build", "trainer")
    version = "import torch; print(torch.__version__, torch.cuda.is_available())"
    out = stack.engine.docker("run", "--rm", "--network", "none", "seqserve-trainer:latest", "python", "-c", version)
    assert out.strip().endswith("+cpu False"), out


def test_the_load_generator_reports_every_architecture(stack: Stack, tmp_path: Path) -> None:
    results = tmp_path / "load"
    results.mkdir()
    stack.env.update(SEQSERVE_LOAD_USERS="4", SEQSERVE_LOAD_TIME="4s", SEQSERVE_LOAD_RESULTS=str(results))
    summary = stack.compose("--profile", "load", "run", "--rm", "--build", "locust")
    with open(results / "load_stats.csv", newline="") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    assert reported(summary, rows) >= expected_names(), summary
    assert rows["Aggregated"]["Failure Count"] == "0"


@pytest.mark.skipif(os.environ.get("SEQSERVE_DOCKER_TRAIN") != "1",
                    reason="SEQSERVE_DOCKER_TRAIN=1 trains in the trainer container (minutes)")
def test_the_stack_as_shipped_trains_then_serves(engine: Engine, tmp_path: Path) -> None:
    shipped = _stack(engine, tmp_path, "shipped", (composefile.COMPOSE_FILE,))
    try:
        shipped.up(wait_s=2400)  # the servers wait for the training
        with Client(shipped.grpc_target) as client:
            models = client.list_models("sentiment")
            assert {m.arch for m in models if m.ready} == set(ARCHS)
            assert all(m.profile == "quick" for m in models)
            assert client.classify("a gripping, funny, wonderful film").label in {"positive", "negative"}
            assert {m.arch for m in client.list_models("tagging") if m.ready} == set(ARCHS)
            tag_traffic(client, "lstm")
    finally:
        shipped.down()
        assert shipped.leftovers() == {}


def test_everything_is_torn_down(stack: Stack, engine: Engine) -> None:
    """Last: `docker compose down` and the engine's stop leave nothing behind."""
    network_ids = stack.leftovers().get("networks", "").split()
    dockerd = int((ENGINE_ROOT / "dockerd.pid").read_text())
    stack.down()
    assert stack.leftovers() == {}
    assert not [n for n in network_ids if Path(f"/sys/class/net/br-{n[:12]}").exists()]
    if not engine.started_here:
        pytest.skip("the engine was running before this test: left running")
    children = _children_of(dockerd)
    engine.stop()
    assert not [pid for pid in children | {dockerd} if Path(f"/proc/{pid}").exists()]
    assert _engine_processes() == {}
    assert [m for m in Path("/proc/self/mounts").read_text().splitlines() if f" {ENGINE_ROOT}/" in m] == []
