"""The checked-in generated code is exactly what the .proto files produce."""

from __future__ import annotations

import subprocess
import sys

from tests.servers import ROOT

# Every package of protos/seqserve/: the typed API and the Open Inference Protocol.
PACKAGES = ["kserve", "v1"]


def test_every_proto_package_is_checked():
    # A new folder of .proto files must be added to PACKAGES, or its code would go unchecked.
    assert {p.parent.name for p in (ROOT / "protos" / "seqserve").glob("*/*.proto")} == set(PACKAGES)


def test_regenerating_the_protos_changes_nothing(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "tools" / "gen_protos.py"), str(tmp_path)], check=True)
    for package in PACKAGES:
        fresh_dir, checked_in_dir = tmp_path / "seqserve" / package, ROOT / "seqserve" / package
        generated = sorted(p.name for p in fresh_dir.iterdir())
        checked_in = sorted(p.name for p in checked_in_dir.glob("*_pb2*"))
        assert generated == checked_in, "run: python tools/gen_protos.py"
        for name in generated:
            fresh = (fresh_dir / name).read_text()
            assert fresh == (checked_in_dir / name).read_text(), f"{package}/{name} is stale: run python tools/gen_protos.py"
