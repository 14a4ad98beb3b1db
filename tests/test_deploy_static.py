"""Fast checks of the deployment files, with no engine and no running service:
Compose v2 resolves them, the replicas are wired everywhere, and the dashboard
asks only for series the server exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from deploy import composefile
from service.metrics import Metrics
from tests.servers import ROOT
from tests.stack_checks import DASHBOARD, require

DEPLOY = ROOT / "deploy"
GRAFANA = DEPLOY / "grafana"
OVERRIDES = {
    "host-models": DEPLOY / "compose.host-models.yml",
    "gpu": DEPLOY / "compose.gpu.yml",
}


@pytest.fixture(scope="module")
def model() -> dict:
    require(compose=True)
    return composefile.config()


@pytest.mark.parametrize("override", [None, *OVERRIDES])
def test_docker_compose_config_accepts_the_files(override: str | None, tmp_path: Path) -> None:
    require(compose=True)
    files = [composefile.COMPOSE_FILE] + ([OVERRIDES[override]] if override else [])
    command = [*composefile.compose_command(*files), "config", "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "SEQSERVE_STACK_MODELS_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr


def test_servers_wait_for_the_trainer_and_nginx_for_healthy_servers(model: dict) -> None:
    services = model["services"]
    servers = composefile.server_services(model)
    assert len(servers) >= 2
    for name in servers:
        assert services[name]["depends_on"]["trainer"]["condition"] == "service_completed_successfully"
        assert services[name]["healthcheck"]["test"][-1] == "/usr/local/bin/seqserve-healthcheck"
        assert services[name]["environment"] == services[servers[0]]["environment"]  # replicas are alike
    assert {n: d["condition"] for n, d in services["nginx"]["depends_on"].items()} == dict.fromkeys(servers, "service_healthy")
    assert services["trainer"]["restart"] == "no"


def test_settings_reach_the_servers_as_seqserve_environment_variables_only(
    model: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.settings import Settings

    fields = {f"SEQSERVE_{f.upper()}" for f in Settings.model_fields}
    for name in composefile.server_services(model):
        env = model["services"][name]["environment"]
        # The server ignores unknown SEQSERVE_ variables: a typo here would go unnoticed.
        assert set(env) <= fields, set(env) - fields
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings()  # every value parses, as the server will read it
        assert settings.tasks == ["sentiment", "tagging", "translation"]


def test_every_replica_is_behind_nginx_and_scraped_by_prometheus(model: dict) -> None:
    nginx = (DEPLOY / "nginx.conf").read_text()
    upstreams = re.findall(r"^\s*server\s+([\w.-]+:\d+);", nginx, re.M)
    targets = re.search(r'job_name: seqserve\s+static_configs:\s+(?:#.*\n\s*)*- targets: \[(.*)\]',
                        (DEPLOY / "prometheus.yml").read_text()).group(1)
    servers = composefile.server_services(model)
    env = model["services"][servers[0]]["environment"]
    assert sorted(upstreams) == [f"{s}:{env['SEQSERVE_GRPC_PORT']}" for s in servers]
    assert sorted(json.loads(f"[{targets}]")) == [f"{s}:{env['SEQSERVE_METRICS_PORT']}" for s in servers]


def test_every_image_builds_from_the_base_image_argument_with_the_hosts_network(model: dict) -> None:
    built = {name: svc["build"] for name, svc in model["services"].items() if "build" in svc}
    assert set(built) >= {"trainer", "nginx", "prometheus", *composefile.server_services(model)}
    for name, build in built.items():
        dockerfile = (ROOT / build["dockerfile"]).read_text()
        assert re.search(r"^ARG BASE_IMAGE=.*\nFROM \$\{BASE_IMAGE\}$", dockerfile, re.M), build["dockerfile"]
        assert build["network"] == "host", name
        assert "BASE_IMAGE" in build["args"], name


def test_the_server_image_gets_no_training_code_and_no_torch() -> None:
    instructions = [line for line in (DEPLOY / "Dockerfile.server").read_text().splitlines() if not line.startswith("#")]
    assert not [line for line in instructions if "torch" in line or "COPY export" in line]
    import tomllib

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in dependencies if re.match(r"(torch|onnx)\b(?!runtime)", d)]


def test_prometheus_accepts_its_config() -> None:
    require("promtool")
    result = subprocess.run(["promtool", "check", "config", str(DEPLOY / "prometheus.yml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _exported_series() -> set[str]:
    names = set()
    for family in Metrics(CollectorRegistry()).registry.collect():
        kind = family.type
        suffixes = {"histogram": ["_bucket", "_sum", "_count"], "counter": ["_total"]}.get(kind, [""])
        names.update(family.name + s for s in suffixes)
    return names | {"up"}


def test_the_dashboard_is_provisioned_and_asks_only_for_exported_series(model: dict) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    datasource_uid = re.search(r"uid:\s*(\S+)", (GRAFANA / "provisioning/datasources/prometheus.yml").read_text()).group(1)
    provider_path = re.search(r"path:\s*(\S+)", (GRAFANA / "provisioning/dashboards/seqserve.yml").read_text()).group(1)
    mounts = {v["target"]: v["source"] for v in model["services"]["grafana"]["volumes"]}
    assert Path(mounts[provider_path]) == DASHBOARD.parent
    assert Path(mounts["/etc/grafana/provisioning"]) == GRAFANA / "provisioning"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    exported = _exported_series()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource_uid
            used = set(re.findall(r"\b(seqserve_\w+|up)\s*\{", target["expr"]))
            assert used and used <= exported, (panel["title"], used - exported)
