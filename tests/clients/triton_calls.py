"""Calls a server with NVIDIA's Python client, ``tritonclient.grpc``, unchanged.

Runs in its own virtual environment (.venv-triton: tritonclient pins protobuf<7,
the project needs 7), so it imports nothing of the project. It reads what to
call as JSON on stdin and prints what the client saw as JSON on stdout:

    in:  {"target": "127.0.0.1:50051",
          "calls": [{"model": "sentiment-lstm", "version": "",
                     "text": ["a good film"]}                       # BYTES [batch]
                    | {..., "tokens": [[2, 5]], "lengths": [2]}      # INT64 tensors
                    (+ optional "outputs": ["probabilities"])]}
    out: {"live": true, "ready": true, "server": {...},
          "calls": [{"ready": ..., "metadata": {...}, "infer": {"model_name": ...,
                     "model_version": ..., "id": ..., "outputs": {name: nested list}}}]}

A step that fails gives {"error": {"status": "StatusCode.NOT_FOUND", "message": ...}}.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException


def _step(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except InferenceServerException as exc:
        return {"error": {"status": str(exc.status()), "message": exc.message()}}


def _inputs(call: dict[str, Any]) -> list[triton.InferInput]:
    if "text" in call:
        texts = np.array([t.encode("utf-8") for t in call["text"]], dtype=np.object_)
        text = triton.InferInput("text", list(texts.shape), "BYTES")
        text.set_data_from_numpy(texts)
        return [text]
    inputs = []
    for name in ("tokens", "lengths"):
        array = np.array(call[name], dtype=np.int64)
        tensor = triton.InferInput(name, list(array.shape), "INT64")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def _plain(array: np.ndarray) -> Any:
    if array.dtype == np.object_:
        return [_plain(a) for a in array] if array.ndim > 1 else [b.decode("utf-8") for b in array]
    return array.tolist()


def _infer(client: triton.InferenceServerClient, call: dict[str, Any], request_id: str) -> dict[str, Any]:
    outputs = [triton.InferRequestedOutput(name) for name in call.get("outputs", [])] or None
    result = client.infer(call["model"], _inputs(call), model_version=call.get("version", ""),
                          outputs=outputs, request_id=request_id)
    response = result.get_response()
    return {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "id": response.id,
        "outputs": {o.name: _plain(result.as_numpy(o.name)) for o in response.outputs},
    }


def main() -> None:
    plan = json.load(sys.stdin)
    client = triton.InferenceServerClient(url=plan["target"])
    report: dict[str, Any] = {
        "live": _step(client.is_server_live),
        "ready": _step(client.is_server_ready),
        "server": _step(lambda: client.get_server_metadata(as_json=True)),
        "calls": [],
    }
    for i, call in enumerate(plan["calls"]):
        model, version = call["model"], call.get("version", "")
        report["calls"].append({
            "ready": _step(lambda: client.is_model_ready(model, version)),
            "metadata": _step(lambda: client.get_model_metadata(model, version, as_json=True)),
            "infer": _step(lambda: _infer(client, call, f"call-{i}")),
        })
    client.close()
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
