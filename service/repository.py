"""Reading the model repository: which model versions exist, and their manifests.

Client-supplied names never become paths: requests are looked up among the
entries found here, so no request can reach outside the repository.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from seqserve.manifest import ARCHS, MANIFEST_NAME, Manifest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelEntry:
    task: str
    arch: str
    version: int
    path: Path  # the version folder
    manifest: Manifest | None  # None when the manifest could not be read
    error: str = ""


def scan(root: Path, tasks: list[str]) -> list[ModelEntry]:
    """Every ``<task>/<arch>/<version>/`` under ``root`` for the given tasks."""
    if not root.is_dir():
        raise FileNotFoundError(f"model repository {root} does not exist or is not a folder")
    entries: list[ModelEntry] = []
    for task in tasks:
        for arch_dir in sorted(p for p in (root / task).glob("*") if p.is_dir()):
            if arch_dir.name not in ARCHS:
                log.warning("ignoring %s: unknown architecture (known: %s)", arch_dir, ", ".join(ARCHS))
                continue
            for version_dir in sorted(p for p in arch_dir.glob("*") if p.is_dir()):
                if version_dir.name.isdigit() and int(version_dir.name) > 0:
                    entries.append(_entry(task, arch_dir.name, version_dir))
                elif not version_dir.name.startswith("."):  # export writes .tmp folders first
                    log.warning("ignoring %s: a version folder is a positive integer", version_dir)
    return entries


def _entry(task: str, arch: str, version_dir: Path) -> ModelEntry:
    version = int(version_dir.name)
    try:
        manifest = Manifest.load(version_dir)
    except ValueError as exc:
        return ModelEntry(task, arch, version, version_dir, None, str(exc))
    if (manifest.task, manifest.arch, manifest.version) != (task, arch, version):
        error = (
            f"{version_dir / MANIFEST_NAME}: says {manifest.task}/{manifest.arch}/{manifest.version}"
            f" but lies in {task}/{arch}/{version}"
        )
        return ModelEntry(task, arch, version, version_dir, None, error)
    return ModelEntry(task, arch, version, version_dir, manifest)
