"""The compose stack's services as plain processes (deploy/stack.py): the same
commands, SEQSERVE_* settings, nginx.conf and prometheus.yml as docker-compose.yml,
on loopback ports, with Debian's nginx and prometheus."""

from __future__ import annotations

import csv
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from deploy import composefile
from deploy.stack import PlainStack, free_port
from seqserve.client import Client
from seqserve.manifest import ARCHS
from tests.servers import ROOT
from tests.stack_checks import (
    calls_by_instance, dashboard_gaps, drive_traffic, expected_names, fake_repository, prom_query, reported, require,
    tag_traffic, wait_for,
)


@pytest.fixture(scope="module")
def stack(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlainStack]:
    require("nginx", "prometheus", compose=True)
    models = fake_repository(tmp_path_factory.mktemp("models"), model_repository)
    with PlainStack(models, tmp_path_factory.mktemp("stack")) as running:
        yield running
    assert not any(p.alive() for p in running.processes())


def replica_calls(metrics_url: str) -> float:
    """Sentiment calls one replica counted, from its own /metrics."""
    with urllib.request.urlopen(metrics_url, timeout=5) as reply:
        text = reply.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "seqserve_requests_total" and sample.labels.get("task") == "sentiment"
    )


def test_the_servers_run_with_the_compose_files_settings(stack: PlainStack) -> None:
    compose_env = composefile.config()["services"]["server-1"]["environment"]
    assert [r.service for r in stack.replicas] == ["server-1", "server-2"]
    for replica in stack.replicas:
        env = replica.process.env
        for name, value in compose_env.items():
            if name not in {"SEQSERVE_HOST", "SEQSERVE_GRPC_PORT", "SEQSERVE_METRICS_PORT", "SEQSERVE_MODEL_REPOSITORY"}:
                assert env[name] == value, name
        assert replica.process.argv[1:] == ["-m", "service"]


def test_every_architecture_answers_through_nginx(stack: PlainStack) -> None:
    with Client(stack.grpc_target) as client:
        served = {m.arch for m in client.list_models("sentiment") if m.ready}
        assert served == set(ARCHS)
        for arch in ARCHS:
            result = client.classify("awful bad film", arch=arch)
            assert (result.label, result.model) == ("negative", f"sentiment/{arch}/1")
        assert {m.arch for m in client.list_models("tagging") if m.ready} == set(ARCHS)
        for arch in ARCHS:
            tag_traffic(client, arch)


def test_one_client_channel_reaches_every_replica(stack: PlainStack) -> None:
    before = [replica_calls(r.metrics_url) for r in stack.replicas]
    with Client(stack.grpc_target) as client:
        for _ in range(20):
            client.classify("good", arch="lstm")
    after = [replica_calls(r.metrics_url) for r in stack.replicas]
    # nginx balances per call, not per connection.
    assert all(a > b for a, b in zip(after, before)), (before, after)
    assert sum(after) - sum(before) == 20


def test_prometheus_scrapes_every_replica(stack: PlainStack) -> None:
    drive_traffic(stack.grpc_target)
    want = {f"127.0.0.1:{r.metrics_port}": replica_calls(r.metrics_url) for r in stack.replicas}
    # The counts Prometheus has are the ones each replica reports, once it scraped them.
    wait_for("Prometheus's calls per replica", lambda: ((seen := calls_by_instance(stack.prometheus_url)) == want, seen))
    up = prom_query(stack.prometheus_url, 'up{job="seqserve"}')
    assert {s["metric"]["instance"]: s["value"][1] for s in up} == {instance: "1" for instance in want}


def test_every_dashboard_query_has_series_for_every_architecture(stack: PlainStack) -> None:
    drive_traffic(stack.grpc_target)
    wait_for("dashboard queries without series", lambda: (not (gaps := dashboard_gaps(stack.prometheus_url)), gaps))


def test_the_container_healthcheck_says_serving_and_fails_without_a_server(stack: PlainStack) -> None:
    script = ROOT / "deploy" / "healthcheck.py"
    up = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                        env={"SEQSERVE_GRPC_PORT": str(stack.replicas[0].grpc_port)})
    assert (up.returncode, up.stdout.strip().endswith("SERVING")) == (0, True), up
    down = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env={"SEQSERVE_GRPC_PORT": str(free_port())})
    assert down.returncode == 1, down
    task = subprocess.run([sys.executable, str(script), "seqserve.v1.Sentiment"], capture_output=True, text=True,
                          env={"SEQSERVE_GRPC_PORT": str(stack.replicas[0].grpc_port)})
    assert task.returncode == 0, task


def test_a_headless_locust_run_reports_every_architecture(stack: PlainStack, tmp_path: Path) -> None:
    require(modules=("locust",))
    run = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "deploy" / "locustfile.py"), "--headless",
         "--users", "4", "--spawn-rate", "4", "--run-time", "4s", "--host", stack.grpc_target,
         "--csv", str(tmp_path / "load"), "--only-summary"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    with open(tmp_path / "load_stats.csv", newline="") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    assert reported(run.stdout + run.stderr, rows) >= expected_names()
    assert any(name.startswith("translation/") for name in rows)  # 1 user in 6, random archs
    assert rows["Aggregated"]["Failure Count"] == "0"
    assert float(rows["Aggregated"]["Request Count"]) > 0


def test_stopping_a_replica_loses_no_call_through_nginx(stack: PlainStack) -> None:
    """A rolling restart: SIGTERM (what compose sends) to one replica while calls
    flow; nginx moves them to the other. Runs last: it leaves one replica."""
    failures: list[str] = []
    answered = 0
    stop = threading.Event()

    def calls() -> None:
        nonlocal answered
        with Client(stack.grpc_target) as client:
            while not stop.is_set():
                try:
                    client.classify("good film", arch="gru")
                    answered += 1
                except grpc.RpcError as exc:
                    failures.append(f"{exc.code().name}: {exc.details()}")

    worker = threading.Thread(target=calls)
    worker.start()
    try:
        wait_for("calls flowing", lambda: (answered >= 20, answered), timeout=30)
        gone = stack.replicas[0].process
        assert gone.stop() == 0
        after_exit = answered
        wait_for("calls answered after the replica exited", lambda: (answered >= after_exit + 50, answered), timeout=30)
    finally:
        stop.set()
        worker.join()
    assert failures == []
    assert "every in-flight RPC finished" in gone.logs()
