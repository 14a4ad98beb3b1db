"""Shared fixtures: a trained model repository and a real server on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from seqserve.manifest import ARCHS
from tests.servers import ROOT, ServerProcess


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "docker: starts a Docker engine and builds images (tests/test_compose_docker.py); -m 'not docker' skips"
    )


def _has_all(repository: Path, task: str) -> bool:
    return all(any((repository / task / arch).glob("*/manifest.json")) for arch in ARCHS)


@pytest.fixture(scope="session")
def model_repository() -> Path:
    """The quick-profile models of the main job; trained here first if missing.

    $SEQSERVE_TEST_MODEL_REPOSITORY picks another repository.
    """
    repository = Path(os.environ.get("SEQSERVE_TEST_MODEL_REPOSITORY", ROOT / "models"))
    cli = [sys.executable, "-m", "seqserve.cli"]
    for task in ("sentiment", "tagging", "translation"):
        if _has_all(repository, task):
            continue
        for step in (
            ["data", "fetch", "--tasks", task],
            ["train", "--task", task, "--profile", "quick"],
            ["export", "--task", task, "--repository", str(repository)],
        ):
            subprocess.run(cli + step, cwd=ROOT, check=True)
    return repository


@pytest.fixture(scope="module")
def server(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("server") / "server.log"
    with ServerProcess(model_repository, log) as proc:
        yield proc


@pytest.fixture
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as ch:
        yield ch
