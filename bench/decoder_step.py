"""One translation decoder step in ONNX Runtime, alone, by rows x source pieces x past tokens.

    .venv/bin/python -m bench.decoder_step [--repository models] [--compare <another repository>]
        [--archs gru transformer] [--shapes 1x20x10 8x30x20 32x54x47]

Times ``decoder.onnx`` with the session options the server's settings produce (random
inputs of the given shape; a Transformer's rows at ragged positions up to the past),
median ms of 7 rounds of 100 runs, repositories alternated round by round so that a
slow minute hits each. A graph that ends in logits (exported before the log-softmax
moved into the graph) is charged the numpy log-softmax the server adds to it, so the
columns compare what a decode step costs. Writes runs/bench/decoder_step-*.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.common import save, table
from seqserve import decoding
from service.runtime import Runtime
from service.settings import Settings

ROUNDS, RUNS = 7, 100


def step_fn(model_dir: Path, rows: int, src_len: int, past: int) -> Callable[[], object]:
    contract = json.loads((model_dir / "manifest.json").read_text())["streaming"]
    session = Runtime(Settings()).session(model_dir / contract["decoder"])
    rng = np.random.default_rng(0)
    sizes = {"batch": rows, "src_len": src_len, "past": past}
    feeds: dict[str, np.ndarray] = {}
    for spec in contract["decoder_inputs"]:
        shape = [sizes[d] if isinstance(d, str) else d for d in spec["shape"]]
        if spec["dtype"] == "float32":
            feeds[spec["name"]] = rng.normal(size=shape).astype(np.float32)
    feeds["prev_token"] = rng.integers(4, 100, size=rows)
    feeds["src_lengths"] = np.full(rows, src_len, dtype=np.int64)
    if contract.get("position_input"):
        feeds[contract["position_input"]] = rng.integers(0, past + 1, size=rows)
    outputs = [spec["name"] for spec in contract["decoder_outputs"]]
    numpy_softmax = outputs[0] == "logits"

    def run() -> object:
        scores, *_ = session.run(outputs, feeds)
        return decoding.log_softmax_(scores) if numpy_softmax else scores

    return run


def latest(model: Path) -> Path:
    return max((d for d in model.iterdir() if d.name.isdigit()), key=lambda d: int(d.name))


def median_ms(runs: list[Callable[[], object]]) -> list[float]:
    rounds: list[list[float]] = [[] for _ in runs]
    for _ in range(ROUNDS):
        for fn, times in zip(runs, rounds):
            for _ in range(10):
                fn()
            start = time.perf_counter()
            for _ in range(RUNS):
                fn()
            times.append((time.perf_counter() - start) / RUNS * 1000)
    return [statistics.median(times) for times in rounds]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repository", type=Path, default=Path("models"))
    p.add_argument("--compare", type=Path, help="another repository, timed alternately (e.g. older exports)")
    p.add_argument("--archs", nargs="+", default=["gru", "transformer"])
    p.add_argument("--shapes", nargs="+", default=["1x20x10", "8x30x20", "32x54x47"], help="rows x source x past")
    args = p.parse_args()
    repos = [args.repository] + ([args.compare] if args.compare else [])
    rows, results = [], []
    for arch in args.archs:
        for shape in args.shapes:
            n, s, past = (int(x) for x in shape.split("x"))
            ms = median_ms([step_fn(latest(r / "translation" / arch), n, s, past) for r in repos])
            rows.append([arch, n, s, past, *ms])
            results.append({"arch": arch, "rows": n, "src_len": s, "past": past, "ms": dict(zip(map(str, repos), ms))})
    print("median ms per decoder step (ONNX Runtime alone, plus numpy's log-softmax for a logits graph)")
    print(table(["arch", "rows", "source", "past", *(str(r) for r in repos)], rows))
    payload = {"args": {k: str(v) for k, v in vars(args).items()}, "steps": results}
    print(f"wrote {save('decoder_step', payload)}")


if __name__ == "__main__":
    main()
