"""The checked-in generated code is exactly what the .proto files produce."""

from __future__ import annotations

import subprocess
import sys

from tests.servers import ROOT


def test_regenerating_the_protos_changes_nothing(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "tools" / "gen_protos.py"), str(tmp_path)], check=True)
    generated = sorted(p.name for p in (tmp_path / "seqserve" / "v1").iterdir())
    checked_in = sorted(p.name for p in (ROOT / "seqserve" / "v1").glob("*_pb2*"))
    assert generated == checked_in, "run: python tools/gen_protos.py"
    for name in generated:
        fresh = (tmp_path / "seqserve" / "v1" / name).read_text()
        assert fresh == (ROOT / "seqserve" / "v1" / name).read_text(), f"{name} is stale: run python tools/gen_protos.py"
