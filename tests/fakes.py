"""Tiny hand-built ONNX sentiment models, for tests of the serving plumbing.

A bag of words: logits = sum of per-token rows. Row 0 (padding) is zero, so
padding never changes a result, just like the trained models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from seqserve.manifest import Manifest, TensorSpec, write_vocab
from seqserve.text import TOKENIZER_NAME

VOCAB = ["<pad>", "<unk>", "good", "bad", "film", "great", "awful"]
_WEIGHTS = {"good": (0.0, 2.0), "great": (0.0, 3.0), "bad": (2.0, 0.0), "awful": (3.0, 0.0)}


def _graph() -> bytes:
    table = np.zeros((len(VOCAB), 2), dtype=np.float32)
    for word, row in _WEIGHTS.items():
        table[VOCAB.index(word)] = row
    nodes = [
        helper.make_node("Gather", ["table", "tokens"], ["rows"]),  # (B, T, 2)
        helper.make_node("ReduceSum", ["rows", "axis"], ["logits"], keepdims=0),  # (B, 2)
    ]
    graph = helper.make_graph(
        nodes,
        "fake_sentiment",
        [
            helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", "length"]),
            helper.make_tensor_value_info("lengths", TensorProto.INT64, ["batch"]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        initializer=[numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.array([1]), "axis")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    return model.SerializeToString()


def write_fake_sentiment(repository: Path, arch: str, version: int = 1, accuracy: float = 0.6) -> Path:
    folder = repository / "sentiment" / arch / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(_graph())
    write_vocab(folder / "vocab.txt", VOCAB)
    Manifest(
        task="sentiment",
        arch=arch,
        version=version,
        labels=["negative", "positive"],
        inputs=[TensorSpec("tokens", "int64", ["batch", "length"]), TensorSpec("lengths", "int64", ["batch"])],
        outputs=[TensorSpec("logits", "float32", ["batch", 2])],
        files={"model": "model.onnx", "vocab": "vocab.txt"},
        tokenizer={"name": TOKENIZER_NAME, "lowercase": True},
        special_tokens={"pad": 0, "unk": 1},
        quality={"test_accuracy": accuracy},
        training={"profile": "fake"},
        parameters=len(VOCAB) * 2,
    ).write(folder)
    return folder
