"""seqserve beside a peer: MLServer serving the same sentiment ONNX model with its adaptive batching.

    make peer-tools                       # MLServer in its own venv (.venv-mlserver)
    .venv/bin/python -m bench.peer [--arch lstm] [--concurrency 1 4 16 64 256] [--seconds 5]

Both servers get the same Open Inference Protocol (KServe v2 gRPC) request from the
same closed-loop client: ``ModelInfer`` with the model's ``tokens``/``lengths``
INT64 tensors for one sentence. MLServer runs bench/mlserver/onnx_runtime.py
(ONNX Runtime, one thread, like seqserve) with ``max_batch_size`` 32 and
``max_batch_time`` 2 ms and its default worker settings; seqserve runs with its
defaults. Prints throughput and p50/p99 side by side; writes runs/bench/peer-*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import grpc
import numpy as np

from bench.common import ROOT, LoadResult, closed_loop, free_port, save, seqserve_server, table, wait_until
from bench.sweep import SENTENCE
from seqserve.kserve import grpc_predict_v2_pb2 as pb
from seqserve.kserve import grpc_predict_v2_pb2_grpc as pb_grpc
from service import repository as repo
from service.settings import Settings
from service.tasks.text_input import Encoder

PEER_VENV = ROOT / ".venv-mlserver"


def infer_request(model_name: str, tokens: list[int]) -> pb.ModelInferRequest:
    ids = np.array([tokens], dtype=np.int64)
    return pb.ModelInferRequest(
        model_name=model_name,
        inputs=[
            pb.ModelInferRequest.InferInputTensor(name="tokens", datatype="INT64", shape=list(ids.shape),
                                                  contents=pb.InferTensorContents(int64_contents=ids.ravel())),
            pb.ModelInferRequest.InferInputTensor(name="lengths", datatype="INT64", shape=[1],
                                                  contents=pb.InferTensorContents(int64_contents=[len(tokens)])),
        ],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="logits")],
    )


async def drive(target: str, request: pb.ModelInferRequest, concurrency: int, seconds: float) -> LoadResult:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        return await closed_loop(lambda: stub.ModelInfer(request, timeout=30), concurrency, seconds)


def wait_ready(target: str, timeout: float = 120.0) -> None:
    wait_until(target, lambda ch: pb_grpc.GRPCInferenceServiceStub(ch).ServerReady(
        pb.ServerReadyRequest(), timeout=1).ready, "ready (MLServer)", timeout)


def start_mlserver(model_file: Path, name: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    if not (PEER_VENV / "bin" / "mlserver").exists():
        raise SystemExit(f"no MLServer in {PEER_VENV}: run `make peer-tools` first")
    model_dir = workdir / name
    model_dir.mkdir(parents=True)
    shutil.copy(ROOT / "bench" / "mlserver" / "onnx_runtime.py", model_dir / "onnx_runtime.py")
    (model_dir / "model-settings.json").write_text(json.dumps({
        "name": name, "implementation": "onnx_runtime.OnnxSentiment",
        "parameters": {"uri": str(model_file)}, "max_batch_size": 32, "max_batch_time": 0.002,
    }))
    grpc_port = free_port()
    (workdir / "settings.json").write_text(json.dumps({
        "grpc_port": grpc_port, "http_port": free_port(), "metrics_port": free_port(), "debug": False,
    }))
    proc = subprocess.Popen([str(PEER_VENV / "bin" / "mlserver"), "start", str(workdir)], cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": ""})
    target = f"127.0.0.1:{grpc_port}"
    wait_ready(target)
    return proc, target


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="lstm")
    p.add_argument("--concurrency", nargs="+", type=int, default=[1, 4, 16, 64, 256])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--repository", type=Path, default=Path("models"))
    args = p.parse_args()
    settings = Settings(model_repository=args.repository)
    (entry,) = [e for e in repo.scan(args.repository, ["sentiment"]) if e.arch == args.arch][-1:]
    m = entry.manifest
    tokens = Encoder(m, entry.path / m.files["vocab"], settings.max_text_chars, settings.max_tokens).encode(SENTENCE)
    name = f"sentiment-{args.arch}"
    request = infer_request(name, tokens)
    results: dict[str, dict[int, LoadResult]] = {"seqserve": {}, "mlserver": {}}
    with seqserve_server(args.repository, tasks='["sentiment"]') as server:
        for c in args.concurrency:
            results["seqserve"][c] = asyncio.run(drive(server.target, request, c, args.seconds))
    with tempfile.TemporaryDirectory() as tmp:
        proc, target = start_mlserver((entry.path / m.files["model"]).resolve(), name, Path(tmp))
        try:
            for c in args.concurrency:
                results["mlserver"][c] = asyncio.run(drive(target, request, c, args.seconds))
        finally:
            proc.terminate()
            proc.wait(30)
    rows = []
    for c in args.concurrency:
        a, b = results["seqserve"][c], results["mlserver"][c]
        rows.append([c, a.per_second, a.p50_ms, a.p99_ms, a.errors, b.per_second, b.p50_ms, b.p99_ms, b.errors,
                     f"{a.per_second / b.per_second:.2f}x"])
    print(f"sentiment/{args.arch}, ModelInfer with tokens/lengths, same client")
    print(table(["conc", "seqserve req/s", "p50 ms", "p99 ms", "err", "MLServer req/s", "p50 ms", "p99 ms", "err",
                 "throughput ratio"], rows))
    print(f"wrote {save('peer', {'args': vars(args) | {'repository': str(args.repository)}, 'results': results})}")


if __name__ == "__main__":
    main()
