"""ONNX Runtime settings, measured: threads, spinning, graph optimization, memory arena.

    .venv/bin/python -m bench.ort_settings [--repository models] [--batches 1 32]

Runs each model the service runs (through the server's own Runtime and model
classes, so the session options are exactly the ones SEQSERVE_ORT_* produce) with
one setting changed at a time from the defaults, and prints the median ms per run
for each batch size: sentiment and tagging (whole sentence) LSTM and Transformer,
and a translation GRU greedy decode. Writes runs/bench/ort_settings-*.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.common import save, table
from bench.sweep import raw_ort_ms

VARIANTS: dict[str, dict[str, object]] = {
    "defaults": {},
    "intra_op_threads=2": {"ort_intra_op_threads": 2},
    "intra_op_threads=0 (ORT decides)": {"ort_intra_op_threads": 0},
    "spinning on": {"ort_spinning": True},
    "optimization basic": {"ort_graph_optimization": "basic"},
    "optimization disable": {"ort_graph_optimization": "disable"},
    "memory arena off": {"ort_memory_arena": False},
}
MODELS = [("sentiment", "lstm"), ("sentiment", "transformer"), ("tagging", "lstm"), ("tagging", "transformer"),
          ("translation", "gru")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repository", type=Path, default=Path("models"))
    p.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    args = p.parse_args()
    results: dict[str, dict[str, float]] = {}
    headers = ["setting"] + [f"{t}/{a} b{b}" for t, a in MODELS for b in args.batches]
    rows = []
    for name, overrides in VARIANTS.items():
        row: list[object] = [name]
        for task, arch in MODELS:
            for b in args.batches:
                ms = raw_ort_ms(task, arch, args.repository, b, **overrides)
                results.setdefault(name, {})[f"{task}/{arch}/b{b}"] = ms
                row.append(ms)
        rows.append(row)
    print("median ms per run (translation: a whole greedy decode)")
    print(table(headers, rows))
    print(f"wrote {save('ort_settings', {'args': vars(args) | {'repository': str(args.repository)}, 'ms': results})}")


if __name__ == "__main__":
    main()
