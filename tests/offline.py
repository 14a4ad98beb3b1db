"""A translation model version decoded in the test process from its files alone, as the server
decodes it (no torch, no knowledge of the architecture): the reference server answers are held to."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from seqserve import decoding
from seqserve.manifest import Manifest


def onnx_callables(version_dir: Path) -> tuple[Manifest, decoding.EncodeFn, decoding.StepFn]:
    m = Manifest.load(version_dir)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    enc = ort.InferenceSession(str(version_dir / m.files["encoder"]), opts, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(version_dir / m.files["decoder"]), opts, providers=["CPUExecutionProvider"])
    encode, step = decoding.session_callables(enc, dec, m.streaming)
    return m, encode, step
