"""Regenerate the checked-in Python gRPC code from protos/.

Usage: python tools/gen_protos.py [OUT_DIR]   (default: the repository root)

Every ``protos/seqserve/<package>/*.proto`` is generated into
``OUT_DIR/seqserve/<package>/``: the typed API (``v1/``) and the Open Inference
Protocol (``kserve/``). tests/test_protos.py runs this into a temporary folder
and fails if the result differs from what is checked in, so an edited .proto
cannot ship without its generated code.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "protos"


def proto_packages() -> list[str]:
    """The folders under protos/seqserve/ that hold .proto files, e.g. ["kserve", "v1"]."""
    return sorted({p.parent.name for p in PROTO_ROOT.glob("seqserve/*/*.proto")})


def generate(out_dir: Path) -> list[Path]:
    protos = sorted(PROTO_ROOT.glob("seqserve/*/*.proto"))
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(p.relative_to(PROTO_ROOT)) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(p for package in proto_packages() for p in (out_dir / "seqserve" / package).glob("*_pb2*.py*"))


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT
    for path in generate(out):
        print(path)
