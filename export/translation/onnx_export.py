"""``python -m export.translation.onnx_export``: translation checkpoints -> an encoder and a decoder-step graph.

    python -m export.translation.onnx_export --arch all --runs ~/.cache/seqserve/runs --repository ./models

writes ``<repository>/translation/<arch>/<version>/`` with

* ``encoder.onnx``: ``src`` int64 [batch, src_len], ``src_lengths`` int64 [batch] ->
  the memory, float32, zero past each length: the encoder's states as the
  decoder reads them, with what its attention computes from them alone done once
  here (``Seq2Seq.encode``): ``memory`` [batch, src_len, width] for the recurrent
  archs; for the Transformer, per layer i, its cross-attention keys ``memory_k_i``
  [batch, heads, head_dim, src_len] and values ``memory_v_i`` [batch, heads,
  src_len, head_dim]; and, for the recurrent archs, the
  decoder's initial state ``h`` (+ ``c`` for lstm/bilstm) float32 [layers,
  batch, hidden];
* ``decoder.onnx``, one step: ``prev_token`` int64 [batch], the state
  (recurrent: ``h`` [, ``c``] [layers, batch, hidden]; Transformer, per layer i:
  ``k_cache_i`` [batch, heads, head_dim, past] and ``v_cache_i`` [batch, heads,
  past, head_dim]), the memory tensors, ``src_lengths``,
  and for the Transformer ``position`` int64 [batch] (tokens each row fed so far;
  its history is the last ``position`` slots of the cache) -> ``log_probs`` float32
  [batch, tgt_vocab] and the new state ``<name>_out`` (the caches one slot longer);
* ``source.subwords.json``, ``target.subwords.json`` (``seqserve.subword``);
* ``manifest.json``: ``inputs``/``outputs`` are the encoder's, ``streaming`` holds
  the decoder's contract and the state specs (name, shape, batch axis, how a
  sequence starts it) so a server can allocate, gather and scatter state
  without knowing the architecture.

Nothing is published unless (1) both graphs match PyTorch (max abs diff < 1e-4)
at several batch sizes, source lengths and cache lengths (ragged positions
included) in a plain and a service-like ORT session, and (2) greedy and beam
search over ORT produce exactly the tokens of the PyTorch decoders on real
test sentences. Exporters: legacy (TorchScript) for the recurrent archs, dynamo
for the Transformer, as for the other tasks (``export.onnx_export.EXPORTER``).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from export.onnx_export import (
    EXPORTER,
    PARITY_ATOL,
    ExportError,
    _package_versions,
    compare,
    export_graph,
    export_parser,
    export_runs,
    median_ms,
    name_io_dims,
    publish_version,
    run_session,
    sessions,
    torch_inputs,
    training_summary,
)
from export.translation.decode import pad_batch, torch_callables
from export.translation.model import TASK, Seq2Seq, load_seq2seq
from seqserve.manifest import Manifest, TensorSpec
from seqserve.subword import BOS_ID, EOS_ID, PAD_ID, SPECIALS, TOKENIZER_NAME, UNK_ID, SubwordModel
from seqserve import decoding

ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
SOURCE_FILE = "source.subwords.json"
TARGET_FILE = "target.subwords.json"
# (batch, src_len) for the encoder; (batch, src_len, past) for the decoder step.
ENC_PARITY_SHAPES = ((1, 1), (32, 20), (1, 128), (7, 33), (5, 2))
DEC_PARITY_SHAPES = ((1, 1, 0), (4, 9, 1), (7, 33, 5), (1, 128, 20), (32, 20, 3))
ENC_EXAMPLE = (3, 11)
DEC_EXAMPLE = (3, 11, 7)  # past 7: a cache length exported at 7 ran right at 0 (notes), 0/1 would specialize
DECODE_PARITY_SENTENCES = 12
MAX_LEN = {"a": 1.5, "b": 10}  # decoding limit: a * source pieces + b target tokens (<eos> included)


# ----------------------------------------------------------------------------- graphs


class EncoderGraph(nn.Module):
    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        self.model = model

    def forward(self, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, ...]:
        memory, state = self.model.encode(src, src_lengths)
        if self.model.cfg.arch == "transformer":
            return tuple(memory)  # the cache starts empty: nothing to compute
        return (*memory, *state)


class RecurrentStep(nn.Module):
    """(prev, h, memory, src_lengths) -> (log_probs, h_out). The searches read log-probabilities:
    ORT's LogSoftmax takes a third of the time numpy's does."""

    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        self.model = model

    def forward(self, prev: Tensor, h: Tensor, memory: Tensor, src_lengths: Tensor) -> tuple[Tensor, Tensor]:
        logits, (h_out,) = self.model.step(prev, [h], [memory], src_lengths, prev)  # position unused
        return F.log_softmax(logits, dim=-1), h_out


class LSTMStep(RecurrentStep):
    """(prev, h, c, memory, src_lengths) -> (log_probs, h_out, c_out)."""

    def forward(  # type: ignore[override]
        self, prev: Tensor, h: Tensor, c: Tensor, memory: Tensor, src_lengths: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        logits, (h_out, c_out) = self.model.step(prev, [h, c], [memory], src_lengths, prev)
        return F.log_softmax(logits, dim=-1), h_out, c_out


class TransformerStep(RecurrentStep):
    """(prev, k_cache_0, v_cache_0, ..., memory_k_0, memory_v_0, ..., src_lengths, position)
    -> (log_probs, k_cache_0_out, ...)."""

    def forward(self, prev: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        *tensors, src_lengths, position = rest
        n = len(self.model.state_names)
        logits, new = self.model.step(prev, tensors[:n], tensors[n:], src_lengths, position)
        return F.log_softmax(logits, dim=-1), *new


def step_graph(model: Seq2Seq) -> nn.Module:
    # eval() on the wrapper: a fresh module is in training mode, and the legacy exporter
    # restores the wrapper's mode *recursively* after exporting, which would switch the
    # model's dropout back on for every later PyTorch call (seen as a parity failure).
    if model.cfg.arch == "transformer":
        return TransformerStep(model).eval()
    return (LSTMStep(model) if model.state_names == ["h", "c"] else RecurrentStep(model)).eval()


# ----------------------------------------------------------------------------- specs


def _state_shape(spec: dict[str, Any]) -> list[str | int]:
    return list(spec["shape"])


def memory_specs(model: Seq2Seq) -> list[TensorSpec]:
    return [TensorSpec(name, "float32", list(shape)) for name, shape in model.memory_specs]


def encoder_specs(model: Seq2Seq) -> tuple[list[TensorSpec], list[TensorSpec]]:
    inputs = [TensorSpec("src", "int64", ["batch", "src_len"]), TensorSpec("src_lengths", "int64", ["batch"])]
    outputs = memory_specs(model)
    if model.cfg.arch != "transformer":
        outputs += [TensorSpec(s["name"], "float32", _state_shape(s)) for s in model.state_specs()]
    return inputs, outputs


def decoder_specs(model: Seq2Seq) -> tuple[list[TensorSpec], list[TensorSpec]]:
    V = model.cfg.tgt_vocab_size
    states = model.state_specs()
    inputs = [TensorSpec("prev_token", "int64", ["batch"])]
    inputs += [TensorSpec(s["name"], "float32", _state_shape(s)) for s in states]
    inputs += [*memory_specs(model), TensorSpec("src_lengths", "int64", ["batch"])]
    if model.cfg.arch == "transformer":
        inputs.append(TensorSpec("position", "int64", ["batch"]))
    outputs = [TensorSpec("log_probs", "float32", ["batch", V])]
    for s in states:
        shape = ["past_plus_1" if d == "past" else d for d in _state_shape(s)]
        outputs.append(TensorSpec(f"{s['name']}_out", "float32", shape))
    return inputs, outputs




def encoder_inputs(B: int, S: int, vocab: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, S + 1, size=B).astype(np.int64)  # (B,)
    lengths[0] = S
    src = rng.integers(0, vocab, size=(B, S)).astype(np.int64)  # (B, S), includes <pad>/<unk>
    src[np.arange(S)[None, :] >= lengths[:, None]] = PAD_ID
    return {"src": src, "src_lengths": lengths}


def decoder_inputs(model: Seq2Seq, B: int, S: int, past: int, seed: int) -> dict[str, np.ndarray]:
    """A random (not zero) state, a memory zeroed past random lengths, ragged positions <= past."""
    cfg, rng = model.cfg, np.random.default_rng(seed)
    enc = encoder_inputs(B, S, 4, seed)
    feeds: dict[str, np.ndarray] = {"prev_token": rng.integers(0, cfg.tgt_vocab_size, size=B).astype(np.int64)}
    for s in model.state_specs():
        shape = [B if d == "batch" else past if d == "past" else d for d in s["shape"]]
        feeds[s["name"]] = rng.uniform(-1, 1, size=shape).astype(np.float32)
    for name, shape in model.memory_specs:
        memory = rng.normal(size=[B if d == "batch" else S if d == "src_len" else d for d in shape])
        past_end = np.arange(S)[None, :] >= enc["src_lengths"][:, None]  # (B, S)
        np.moveaxis(memory, shape.index("src_len"), 1)[past_end] = 0.0
        feeds[name] = memory.astype(np.float32)
    feeds["src_lengths"] = enc["src_lengths"]
    if cfg.arch == "transformer":
        position = rng.integers(0, past + 1, size=B).astype(np.int64)  # (B,)
        position[0] = past
        feeds["position"] = position
    return feeds




def _dynamic(specs: list[TensorSpec]) -> dict[str, dict[int, str]]:
    # "past_plus_1" is the exporter's business (an output dim); only declare the input axes' names.
    return {
        s.name: {i: d for i, d in enumerate(s.shape) if isinstance(d, str) and d != "past_plus_1"} for s in specs
    }


def export_encoder(model: Seq2Seq, path: Path) -> str:
    model.eval()
    exporter = EXPORTER[model.cfg.arch]
    inputs, outputs = encoder_specs(model)
    example = encoder_inputs(*ENC_EXAMPLE, model.cfg.src_vocab_size, seed=0)
    dynamic = _dynamic(inputs) if exporter == "dynamo" else _dynamic(inputs + outputs)
    export_graph(EncoderGraph(model).eval(), example, [s.name for s in outputs], dynamic, exporter, path)
    name_io_dims(path, inputs + outputs)
    return exporter


def export_decoder(model: Seq2Seq, path: Path) -> str:
    model.eval()
    exporter = EXPORTER[model.cfg.arch]
    inputs, outputs = decoder_specs(model)
    example = decoder_inputs(model, *DEC_EXAMPLE, seed=0)
    dynamic = _dynamic(inputs) if exporter == "dynamo" else _dynamic(inputs + outputs)
    export_graph(step_graph(model), example, [s.name for s in outputs], dynamic, exporter, path)
    name_io_dims(path, inputs + outputs)
    return exporter


# ----------------------------------------------------------------------------- verification


def check_encoder_parity(model: Seq2Seq, path: Path, atol: float = PARITY_ATOL) -> float:
    _, outputs = encoder_specs(model)
    names, worst = [s.name for s in outputs], 0.0
    for session in sessions(path):
        for i, (B, S) in enumerate(ENC_PARITY_SHAPES):
            feeds = encoder_inputs(B, S, model.cfg.src_vocab_size, seed=100 + i)
            with torch.no_grad():
                expected = [t.numpy() for t in EncoderGraph(model).eval()(*torch_inputs(feeds))]
            got = run_session(session, feeds, names, f"{path.name} at {B}x{S}")
            worst = max(worst, compare(f"{path.name} at batch x src_len {B}x{S}", got, expected, atol))
    return worst


def check_decoder_parity(model: Seq2Seq, path: Path, atol: float = PARITY_ATOL) -> float:
    _, outputs = decoder_specs(model)
    names, worst = [s.name for s in outputs], 0.0
    for session in sessions(path):
        for i, (B, S, past) in enumerate(DEC_PARITY_SHAPES):
            feeds = decoder_inputs(model, B, S, past, seed=200 + i)
            with torch.no_grad():
                expected = [t.numpy() for t in step_graph(model)(*torch_inputs(feeds))]
            got = run_session(session, feeds, names, f"{path.name} at {B}x{S}, past {past}")
            worst = max(worst, compare(f"{path.name} at batch x src_len x past {B}x{S}x{past}", got, expected, atol))
    return worst


def measure_latency(model: Seq2Seq, encoder_path: Path, decoder_path: Path) -> dict[str, float]:
    """Median ORT milliseconds per call as the service runs it (1 intra-op thread, basic optimizations):
    encoding a 30-piece sentence; one decoder step at batch 1 and 8 (past 20 for the Transformer)."""

    _, enc = sessions(encoder_path)
    _, dec = sessions(decoder_path)
    out = {"encoder_ms_len30": median_ms(enc, encoder_inputs(1, 30, model.cfg.src_vocab_size, 1))}
    for B in (1, 8):
        out[f"step_ms_batch{B}"] = median_ms(dec, decoder_inputs(model, B, 30, 20, seed=1))
    return out


def decoding_contract(model: Seq2Seq) -> dict[str, Any]:
    """What a torch-free decoding loop needs to drive the two graphs (the manifest's ``streaming``)."""
    dec_in, dec_out = decoder_specs(model)
    return {
        "mode": "autoregressive",
        "encoder": ENCODER_FILE,
        "decoder": DECODER_FILE,
        "decoder_inputs": [vars(s) for s in dec_in],
        "decoder_outputs": [vars(s) for s in dec_out],
        # init "encoder": the encoder graph outputs the tensor under the same name;
        # init "empty": zeros with the "past" axis of length 0 (the Transformer's caches).
        "state": model.state_specs(),
        # The encoder's outputs the decoder reads as they are, in this order; the batch on axis 0.
        "memory": [
            {"name": name, "source_axis": axis} for (name, _), axis in zip(model.memory_specs, model.memory_axes)
        ],
        "position_input": "position" if model.cfg.arch == "transformer" else None,
        "bos_id": BOS_ID,
        "eos_id": EOS_ID,
        "max_len": MAX_LEN,
    }


def ort_callables(encoder: Any, decoder: Any, contract: dict[str, Any]) -> tuple[decoding.EncodeFn, decoding.StepFn]:
    return decoding.session_callables(encoder, decoder, contract)


def check_decoding_parity(
    model: Seq2Seq, encoder_path: Path, decoder_path: Path, sources: list[list[int]], beam_size: int = 4
) -> dict[str, int]:
    """Greedy and beam over ORT (service-like sessions) == the PyTorch decoders, token for token."""
    contract = decoding_contract(model)
    _, enc = sessions(encoder_path)
    _, dec = sessions(decoder_path)
    onnx_fns = ort_callables(enc, dec, contract)
    torch_fns = torch_callables(model)
    src, lengths = pad_batch(sources, PAD_ID)
    limit = decoding.default_max_len(lengths, MAX_LEN["a"], MAX_LEN["b"])
    common = dict(bos_id=BOS_ID, eos_id=EOS_ID, max_len=limit, batch_axes=decoding.state_batch_axes(contract),
                  memory_axes=decoding.memory_axes(contract))
    compared = {}
    for name, run in (
        ("greedy", lambda fns: decoding.greedy(*fns, src, lengths, **common)),
        ("beam", lambda fns: decoding.beam_search(*fns, src, lengths, beam_size=beam_size, n_best=2, **common)),
    ):
        expected, got = run(torch_fns), run(onnx_fns)
        for i, (e, g) in enumerate(zip(expected, got)):
            if [h.tokens for h in e.hypotheses] != [h.tokens for h in g.hypotheses]:
                raise ExportError(f"{name} decoding over ONNX Runtime differs from PyTorch on sentence {i}")
        compared[name] = len(sources)
    return compared


# ----------------------------------------------------------------------------- manifest + repository


def build_manifest(
    model: Seq2Seq, ckpt: dict[str, Any], version: int, exporter: str, latency: dict[str, float] | None = None
) -> Manifest:
    metrics = ckpt.get("metrics", {})
    quality = {
        k: metrics[k]
        for k in (
            "test_bleu_greedy", "test_bleu_beam", "dev_bleu", "beam_size", "length_penalty", "test_size", "dev_size"
        )
        if k in metrics
    }
    inputs, outputs = encoder_specs(model)
    return Manifest(
        task=TASK,
        arch=model.cfg.arch,
        version=version,
        labels=[],
        inputs=inputs,
        outputs=outputs,
        files={"encoder": ENCODER_FILE, "decoder": DECODER_FILE, "source_subwords": SOURCE_FILE,
               "target_subwords": TARGET_FILE},
        tokenizer={"name": TOKENIZER_NAME, "source": SOURCE_FILE, "target": TARGET_FILE},
        special_tokens={"pad": PAD_ID, "unk": UNK_ID, "bos": BOS_ID, "eos": EOS_ID},
        quality=quality,
        training={**training_summary(ckpt), "bleu_signature": metrics.get("bleu_signature", "")},
        model_config=model.cfg.to_dict(),
        parameters=sum(p.numel() for p in model.parameters()),
        exported_with={**_package_versions(), "exporter": exporter},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        streaming={**decoding_contract(model), "latency_ms": latency or {}},
    )


def parity_sources(source: SubwordModel, ckpt: dict[str, Any], n: int = DECODE_PARITY_SENTENCES) -> list[list[int]]:
    """Real test sentences when the checkpoint names its test file, else fixed English ones."""
    test_file = ckpt.get("training", {}).get("data_files", {}).get("test")
    texts: list[str] = []
    if test_file and Path(test_file).is_file():
        from export.corpora.formats import read_parallel

        texts = [s for s, _ in read_parallel(test_file)[:n]]
    if not texts:
        texts = ["In the beginning God created the heavens and the earth.", "Jesus wept.",
                 "And he said to them, Go into all the world."]
    return [source.encode(t) or [UNK_ID] for t in texts]


def export_checkpoint(
    checkpoint_path: Path, repository: Path, version: int | None = None, measure: bool = True
) -> Path:
    model, ckpt = load_seq2seq(Path(checkpoint_path))
    subwords = ckpt.get("training", {}).get("subwords")
    if not subwords:
        raise ExportError(f"{checkpoint_path}: no subword models in the checkpoint")
    source, target = SubwordModel.from_dict(subwords["source"]), SubwordModel.from_dict(subwords["target"])
    if len(source) != model.cfg.src_vocab_size or len(target) != model.cfg.tgt_vocab_size:
        raise ExportError(f"{checkpoint_path}: subword models do not match the model's vocabulary sizes")
    if tuple(target.pieces[: len(SPECIALS)]) != SPECIALS:
        raise ExportError("target vocabulary does not start with the special tokens")

    latency: dict[str, float] = {}

    def write_files(folder: Path) -> str:
        exporter = export_encoder(model, folder / ENCODER_FILE)
        check_encoder_parity(model, folder / ENCODER_FILE)
        export_decoder(model, folder / DECODER_FILE)
        check_decoder_parity(model, folder / DECODER_FILE)
        check_decoding_parity(model, folder / ENCODER_FILE, folder / DECODER_FILE, parity_sources(source, ckpt))
        if measure:
            latency.update(measure_latency(model, folder / ENCODER_FILE, folder / DECODER_FILE))
        source.save(folder / SOURCE_FILE)
        target.save(folder / TARGET_FILE)
        return exporter

    return publish_version(
        Path(repository) / TASK / model.cfg.arch,
        version,
        write_files,
        lambda v, exporter: build_manifest(model, ckpt, v, exporter, latency),
    )


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    return export_parser(
        TASK,
        "Export translation checkpoints to ONNX (encoder + decoder step), verify them against "
        "PyTorch (tensors and decoded tokens), and add them to a model repository.",
    )


def _summary(m: Manifest) -> str:
    q = m.quality
    return (
        f"test BLEU greedy {q.get('test_bleu_greedy', float('nan')):.2f},"
        f" beam {q.get('test_bleu_beam', float('nan')):.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    return export_runs(TASK, build_parser().parse_args(argv), export_checkpoint, _summary)


if __name__ == "__main__":
    sys.exit(main())
