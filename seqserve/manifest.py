"""The model repository's manifest: one schema, written by export, read by the server.

Layout of a model repository::

    <root>/<task>/<arch>/<version>/manifest.json
                                   model.onnx       (files named in ``files``)
                                   vocab.txt        (one token a line; line number = id)

``version`` is a positive integer; a higher number is newer.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1
TASKS = ("sentiment", "tagging", "translation")
ARCHS = ("rnn", "lstm", "gru", "bilstm", "transformer")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: "int64", "float32"
    shape: list[str | int]  # symbolic names for dynamic axes


@dataclass(frozen=True)
class Manifest:
    task: str
    arch: str
    version: int
    labels: list[str]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    files: dict[str, str]  # role -> file name in the version folder ("model", "vocab")
    tokenizer: dict[str, Any]  # {"name": "words-v1", "lowercase": true}
    special_tokens: dict[str, int]  # {"pad": 0, "unk": 1}
    quality: dict[str, float] = field(default_factory=dict)  # e.g. test_accuracy
    training: dict[str, Any] = field(default_factory=dict)  # profile, epochs, seed, data sizes
    model_config: dict[str, Any] = field(default_factory=dict)  # the ModelConfig used
    parameters: int = 0
    exported_with: dict[str, str] = field(default_factory=dict)  # package -> version
    created: str = ""  # ISO-8601 UTC
    # Per-token features the server computes beside the ids (tagging), e.g.
    # {"name": "suffix-shape-v1", "buckets": 4096}; empty when the model takes ids only.
    features: dict[str, Any] = field(default_factory=dict)
    # How the model streams (tagging): {"mode": "causal"} when a step graph carries
    # the state, {"mode": "lookahead", "lookahead": k} when it needs k future tokens.
    streaming: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Manifest":
        raw = dict(raw)
        if raw.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise ValueError(f"unsupported manifest schema_version {raw.get('schema_version')}")
        raw["inputs"] = [TensorSpec(**t) for t in raw["inputs"]]
        raw["outputs"] = [TensorSpec(**t) for t in raw["outputs"]]
        raw["version"] = int(raw["version"])
        return cls(**raw)

    @classmethod
    def load(cls, version_dir: Path) -> "Manifest":
        path = Path(version_dir) / MANIFEST_NAME
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: invalid manifest: {exc}") from exc

    def write(self, version_dir: Path) -> Path:
        path = Path(version_dir) / MANIFEST_NAME
        path.write_text(self.to_json(), encoding="utf-8")
        return path


def read_vocab(path: Path) -> list[str]:
    return Path(path).read_text(encoding="utf-8").split("\n")[:-1]


def write_vocab(path: Path, tokens: list[str]) -> None:
    if any("\n" in t for t in tokens):
        raise ValueError("vocabulary tokens may not contain newlines")
    Path(path).write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
