"""What users rely on in a running stack, checked the same way whether it runs as
plain processes (test_stack_processes) or on a Docker engine (test_compose_docker)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from deploy import composefile
from seqserve.client import Client
from seqserve.manifest import ARCHS
from tests.fakes import write_fake_sentiment
from tests.servers import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "seqserve.json"
# What Grafana puts in for $__rate_interval at this scrape interval, give or take.
RATE_INTERVAL = "30s"

T = TypeVar("T")


def require(*tools: str, compose: bool = False, modules: tuple[str, ...] = ()) -> None:
    """Skip when a tool is missing, with the reason; on CI (``CI`` set) fail instead."""
    missing = [t for t in tools if shutil.which(t) is None]
    missing += [m for m in modules if importlib.util.find_spec(m) is None]
    if compose and composefile.compose_binary() is None:
        missing.append("Compose v2")
    if missing:
        tool_missing(f"{', '.join(missing)} not installed: run scripts/install-deploy-tools.sh")


def tool_missing(message: str) -> None:
    """Skip, saying what is missing; on CI (``CI`` set), where the Makefile's test
    path installs every tool, fail instead: a missing tool there is a bug."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def fake_repository(path: Path, models: Path) -> Path:
    """A model repository to serve: a tiny fake sentiment model for every architecture,
    and the quick tagging and translation models of ``models`` (small enough to copy)."""
    for i, arch in enumerate(ARCHS):
        write_fake_sentiment(path, arch, accuracy=0.5 + i / 100)
    for task in ("tagging", "translation"):
        shutil.copytree(models / task, path / task)
    return path


def drive_traffic(target: str, calls_per_arch: int = 6) -> int:
    """Calls every architecture through ``target``: sentiment unary, batch and one
    refused call, a tagging call and a tagging stream, a translation and a streamed
    translation each, so every dashboard panel (errors, streams and decoding too) has
    something per architecture.
    Returns how many calls succeeded."""
    done = 0
    with Client(target) as client:
        for arch in ARCHS:
            for _ in range(calls_per_arch):
                assert client.classify("a good great film", arch=arch).label == "positive"
                done += 1
            assert [c.label for c in client.classify_batch(["awful bad", "great"], arch=arch)] == ["negative", "positive"]
            done += 1
            with pytest.raises(grpc.RpcError) as refused:
                client.classify("", arch=arch)
            assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            done += tag_traffic(client, arch) + translation_traffic(client, arch)
    return done


def tag_traffic(client: Client, arch: str) -> int:
    """One unary Tag and one stream of text cut mid-word; returns the calls made."""
    (tokens,), model = client.tag(["The jury said it."], arch)
    assert [t.tag for t in tokens][:1] == ["DET"] and model.startswith(f"tagging/{arch}/")
    replies = list(client.tag_stream(["The ju", "ry said ", "it."], arch))
    assert [t.token for r in replies[1:] for t in r] == ["The", "jury", "said", "it", "."]
    return 2


def translation_traffic(client: Client, arch: str) -> int:
    """One Translate with beam search and one greedy TranslateStream; returns the calls made."""
    text = "In the beginning God created the heavens and the earth."
    result = client.translate(text, arch, beam_size=4)
    assert result.text and result.model.startswith(f"translation/{arch}/")
    *pieces, last = client.translate_stream(text, arch, beam_size=1)
    assert "".join(pieces) == last.text
    return 2


def prom_query(prometheus_url: str, expr: str) -> list[dict[str, Any]]:
    url = f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=10) as reply:
        body = json.load(reply)
    assert body["status"] == "success", body
    return body["data"]["result"]


def wait_for(what: str, probe: Callable[[], tuple[bool, T]], timeout: float = 90.0) -> T:
    """Poll until ``probe`` says done (Prometheus only knows what it scraped);
    fail with the last thing it saw."""
    deadline = time.monotonic() + timeout
    while True:
        done, seen = probe()
        if done:
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {seen!r} after {timeout:.0f}s")
        time.sleep(1)


def panel_queries(tasks: tuple[str, ...] = ("sentiment", "tagging", "translation")) -> list[tuple[str, str, bool]]:
    """Every query of the dashboard as Grafana sends it with "All" selected:
    (panel title and refId, PromQL, whether it is split by architecture)."""
    dashboard = json.loads(DASHBOARD.read_text())
    values = {"task": list(tasks), "arch": list(ARCHS)}
    queries = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", RATE_INTERVAL)
            # A multi-value variable becomes a regex alternation, as Grafana does it.
            expr = re.sub(r"\$(task|arch)\b", lambda m: "(" + "|".join(values[m.group(1)]) + ")", expr)
            by_arch = bool(re.search(r"by \([^)]*\barch\b", expr))
            queries.append((f"{panel['title']} [{target['refId']}]", expr, by_arch))
    return queries


def dashboard_gaps(prometheus_url: str) -> dict[str, str]:
    """Panel queries that do not yet return series (for every architecture, where
    the panel splits by architecture): {query: what is missing}."""
    gaps = {}
    for name, expr, by_arch in panel_queries():
        series = prom_query(prometheus_url, expr)
        if by_arch:
            missing = set(ARCHS) - {s["metric"].get("arch") for s in series}
            if missing:
                gaps[name] = f"no series for {sorted(missing)}"
        elif not series:
            gaps[name] = "no series"
    return gaps


def calls_by_instance(prometheus_url: str) -> dict[str, float]:
    """Sentiment calls each scraped replica counted, as Prometheus has them."""
    series = prom_query(prometheus_url, 'sum by (instance) (seqserve_requests_total{task="sentiment"})')
    return {s["metric"]["instance"]: float(s["value"][1]) for s in series}


def expected_names() -> set[str]:
    """Request names a short locust run must report: every architecture's Classify and TagStream."""
    return {f"sentiment/{arch} Classify" for arch in ARCHS} | {f"tagging/{arch} TagStream" for arch in ARCHS}


def reported(summary: str, csv_rows: dict[str, Any]) -> set[str]:
    """Names locust reported, in its CSV or its final summary: a stream that ends as the
    users stop can land in the summary after the CSV's last write."""
    return set(csv_rows) | {name for name in expected_names() if name in summary}
