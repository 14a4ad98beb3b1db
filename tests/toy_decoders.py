"""A toy encoder-decoder in numpy for tests of the decoding loop and its scheduler.

Its cache grows by a slot per step (like the Transformer's, right-aligned) and
its logits read the row's whole history and its own source, so a wrongly
aligned, padded or mixed-up row changes the tokens.
"""

from __future__ import annotations

import numpy as np

from seqserve import decoding

BOS, EOS, V = 2, 3, 11
MEMORY_AXES = (1, 2)  # CacheLM's memory: the source on axis 1 of the first tensor, 2 of the second


class CacheLM:
    """Logits from the previous token, the sum of the row's history (its last
    ``position`` cache slots, right-aligned) and its own rows of both its memory
    tensors (two, as the Transformer's are several, the second with its source on
    another axis, as the Transformer's keys have theirs: ``MEMORY_AXES``)."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.table = rng.normal(size=(V, V)).astype(np.float32) * 2  # (V, V)
        self.mix = rng.normal(size=(4, V)).astype(np.float32)  # (4, V)
        self.mix2 = rng.normal(size=(2, V)).astype(np.float32)  # (2, V)

    def encode(self, src: np.ndarray, lengths: np.ndarray) -> tuple[decoding.Memory, decoding.State]:
        memory = np.zeros((*src.shape, 4), np.float32)  # (B, S, 4), zero past each length
        memory2 = np.zeros((src.shape[0], 2, src.shape[1]), np.float32)  # (B, 2, S)
        for b, n in enumerate(lengths):
            memory[b, :n] = src[b, :n, None] * np.array([0.1, -0.2, 0.05, 0.3], np.float32)
            memory2[b, :, :n] = np.sqrt(src[b, None, :n]) * np.array([[0.7], [-0.4]], np.float32)
        return (memory, memory2), {"k": np.zeros((1, src.shape[0], 0, 4), np.float32)}  # (L, B, past, 4)

    def step(self, prev, state, memory, lengths, position):
        k = state["k"]  # (1, B, past, 4)
        past = k.shape[2]
        valid = np.arange(past)[None, :] >= past - position[:, None]  # (B, past): the row's own slots
        history = (k[0] * valid[:, :, None]).sum(axis=1)  # (B, 4)
        memory, memory2 = memory
        mask = np.arange(memory.shape[1])[None, :] < lengths[:, None]  # (B, S)
        context = (memory * mask[:, :, None]).sum(axis=1)  # (B, 4)
        context2 = (memory2 * mask[:, None, :]).sum(axis=2)  # (B, 2)
        logits = self.table[prev] + (history * 0.3 + context) @ self.mix + context2 @ self.mix2  # (B, V)
        slot = np.eye(4, dtype=np.float32)[prev % 4][None, :, None, :]  # (1, B, 1, 4)
        return decoding.log_softmax_(logits), {"k": np.concatenate([k, slot], axis=2)}
