"""Unpack Debian packages without installing them.

A ``.deb`` is an ``ar`` archive holding ``debian-binary``, ``control.tar.*``
and ``data.tar.*``; the files we want are in the data tarball. ``ar`` is
simple enough to read here, and the tarball is xz (current Debian), gzip,
bzip2 or uncompressed, all of which the standard library handles. Only a zstd
tarball (Ubuntu's default since 21.10) needs help: the optional
``zstandard`` module, or ``dpkg-deb`` when present.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path, PurePosixPath

_AR_MAGIC = b"!<arch>\n"
_AR_HEADER = 60


class ArchiveError(ValueError):
    """A package file is not the archive it claims to be."""


def read_ar(data: bytes, source: str = "archive") -> dict[str, bytes]:
    """Return the members of a (System V / GNU) ``ar`` archive by name."""
    if not data.startswith(_AR_MAGIC):
        raise ArchiveError(f"{source}: not an ar archive (bad magic)")
    members: dict[str, bytes] = {}
    pos = len(_AR_MAGIC)
    while pos + _AR_HEADER <= len(data):
        header = data[pos : pos + _AR_HEADER]
        if header[58:60] != b"`\n":
            raise ArchiveError(f"{source}: corrupt ar member header at byte {pos}")
        # GNU ar ends names with "/"; the field is space padded.
        name = header[0:16].decode("ascii", "replace").rstrip(" ").rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            raise ArchiveError(f"{source}: bad size in ar member {name!r}") from None
        start = pos + _AR_HEADER
        if start + size > len(data):
            raise ArchiveError(f"{source}: ar member {name!r} is truncated")
        members[name] = data[start : start + size]
        pos = start + size + (size & 1)  # members are 2-byte aligned
    return members


def _zstd_decompress(blob: bytes, deb: Path) -> bytes:
    try:
        import zstandard  # type: ignore[import-not-found]
    except ImportError:
        pass
    else:
        return zstandard.ZstdDecompressor().decompressobj().decompress(blob)
    if shutil.which("dpkg-deb"):
        result = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=False)
        if result.returncode == 0:
            return result.stdout
        raise ArchiveError(f"{deb}: dpkg-deb failed: {result.stderr.decode(errors='replace').strip()}")
    raise ArchiveError(
        f"{deb}: data.tar.zst needs zstd support: `pip install zstandard` "
        "or `apt-get install -y dpkg`"
    )


def deb_data_tar(deb: Path) -> tarfile.TarFile:
    """Open the ``data.tar.*`` of a ``.deb`` as a tarfile (in memory)."""
    members = read_ar(deb.read_bytes(), str(deb))
    names = [n for n in members if n.startswith("data.tar")]
    if len(names) != 1:
        raise ArchiveError(f"{deb}: expected one data.tar.* member, found {sorted(members)}")
    name = names[0]
    blob = members[name]
    if name.endswith(".zst"):
        return tarfile.open(fileobj=io.BytesIO(_zstd_decompress(blob, deb)), mode="r:")
    try:
        # "r:*" detects xz, gzip, bzip2 and plain tar by their headers.
        return tarfile.open(fileobj=io.BytesIO(blob), mode="r:*")
    except tarfile.TarError as exc:
        raise ArchiveError(f"{deb}: cannot read {name}: {exc}") from None


def extract_deb(deb: Path, dest: Path, under: str = "") -> Path:
    """Extract the regular files of a ``.deb`` below ``under`` into ``dest``.

    Paths are checked so a crafted package cannot write outside ``dest``;
    links and device files are skipped (nothing we read needs them).
    Returns ``dest / under``.
    """
    prefix = PurePosixPath(under.strip("/")) if under.strip("/") else None
    with deb_data_tar(deb) as tar:
        for member in tar.getmembers():
            name = member.name
            while name.startswith("./"):
                name = name[2:]
            rel = PurePosixPath(name.lstrip("/"))
            if not member.isfile() or ".." in rel.parts:
                continue
            if prefix is not None and prefix not in rel.parents:
                continue
            target = dest.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            if source is None:
                continue
            with source, target.open("wb") as out:
                shutil.copyfileobj(source, out)
    return dest / under.strip("/") if prefix is not None else dest
