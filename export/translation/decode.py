"""The PyTorch decoders: the model's ``encode``/``step`` driven by the numpy search in
``seqserve.decoding`` — the same search the server runs over ONNX Runtime, so the
PyTorch and ONNX decoders can differ only where the graphs differ."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from export.translation.model import Seq2Seq
from seqserve import decoding
from seqserve.decoding import Translation


def torch_callables(model: Seq2Seq) -> tuple[decoding.EncodeFn, decoding.StepFn]:
    names = model.state_names

    @torch.no_grad()
    def encode(src: np.ndarray, src_lengths: np.ndarray) -> tuple[decoding.Memory, decoding.State]:
        memory, state = model.encode(torch.from_numpy(src), torch.from_numpy(src_lengths))
        return tuple(m.numpy() for m in memory), {n: s.numpy() for n, s in zip(names, state)}

    @torch.no_grad()
    def step(prev, state, memory, src_lengths, position):  # numpy in, numpy out
        logits, new = model.step(
            torch.from_numpy(prev),
            [torch.from_numpy(np.ascontiguousarray(state[n])) for n in names],
            [torch.from_numpy(np.ascontiguousarray(m)) for m in memory],
            torch.from_numpy(np.ascontiguousarray(src_lengths)),
            torch.from_numpy(position),
        )
        return torch.log_softmax(logits, dim=-1).numpy(), {n: s.numpy() for n, s in zip(names, new)}

    return encode, step


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Ragged id lists -> (B, S) int64 right-padded, (B,) int64 lengths (an empty row keeps length 0)."""
    S = max(1, max((len(s) for s in seqs), default=1))
    tokens = np.full((len(seqs), S), pad_id, dtype=np.int64)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = s
    return tokens, np.array([len(s) for s in seqs], dtype=np.int64)


def translate(
    model: Seq2Seq, sources: Sequence[Sequence[int]], *, beam_size: int = 1, batch_size: int = 64, **kw
) -> list[Translation]:
    """Decode id lists (greedy when beam_size == 1 unless ``force_beam``), batched by similar length."""
    model.eval()
    encode, step = torch_callables(model)
    force_beam = kw.pop("force_beam", False)
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    out: list[Translation | None] = [None] * len(sources)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        src, lengths = pad_batch([sources[i] for i in idx], model.cfg.pad_id)
        batch_axes = decoding.state_batch_axes({"state": model.state_specs()})
        common = dict(bos_id=model.cfg.bos_id, eos_id=model.cfg.eos_id, batch_axes=batch_axes,
                      memory_axes=model.memory_axes, **kw)
        if beam_size == 1 and not force_beam:
            res = decoding.greedy(encode, step, src, lengths, **common)
        else:
            res = decoding.beam_search(encode, step, src, lengths, beam_size=beam_size, **common)
        for i, r in zip(idx, res):
            out[i] = r
    return out  # type: ignore[return-value]
