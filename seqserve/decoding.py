"""Autoregressive decoding in numpy: greedy and beam search over an ``encode`` and a ``step`` callable.

Shared (like the tokenizers) by the server, which drives ONNX Runtime sessions with it,
and by export, which drives the PyTorch model with it: parity then tests the graphs.

No torch, no ONNX Runtime, no gRPC here: the caller wraps whatever runs the
graphs (ORT sessions in the server, the PyTorch model in export and tests) as

    encode(src (B, S) int64, src_lengths (B,) int64) -> (memory (B, S, M) float32, state)
    step(prev (B,) int64, state, memory, src_lengths, position (B,) int64) -> (logits (B, V) float32, state)

where ``state`` is a dict name -> array with the batch on axis ``batch_axes[name]``
(1 for every state tensor of the exported decoders: recurrent h/c (layers, B, H),
Transformer k/v caches (layers, B, heads, past, head_dim)). ``position`` is the
number of tokens each row has already fed (0 for <bos>).

Everything per sequence lives on the batch axis, so rows can be dropped
(a sentence finished: ``take_rows``), duplicated (beams) or, later, joined by
a continuous-batching scheduler (concatenate states along the batch axis; the
Transformer's caches of different lengths are left-padded with zeros, since a
row's history is the last ``position`` slots). The per-step pieces such a
scheduler reuses: ``log_softmax``, ``beam_candidates`` (one sentence's beam
expansion), ``take_rows``, ``initial_state``; the loops below already let
finished rows leave the running batch every step.

Beam search: ``beam_size`` hypotheses per sentence; each step every live
hypothesis proposes its continuations, the best 2 x beam are scanned in score
order, those ending in <eos> become finished hypotheses (scored by
``sum log p / length ** length_penalty``, length counting the <eos>), the
others refill the beam. A sentence stops when it has ``beam_size`` finished
hypotheses and either ``early_stopping`` is set or no live hypothesis can
still beat the worst kept one (its score normalized at the current length —
the usual heuristic), or at ``max_len``, where live hypotheses are finished
as they are. Ties between equal scores go to the lower (beam, token) index.
With ``beam_size=1`` beam search returns exactly the greedy tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

State = dict[str, np.ndarray]
EncodeFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, State]]
StepFn = Callable[[np.ndarray, State, np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, State]]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """(B, V) -> (B, V) in float64, so the sums over a long hypothesis do not drift."""
    x = logits.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def take_rows(state: State, index: np.ndarray, batch_axes: dict[str, int] | None = None) -> State:
    """Gather rows of every state tensor along its batch axis (drop, reorder or repeat sequences)."""
    axes = batch_axes or {}
    return {name: np.take(value, index, axis=axes.get(name, 1)) for name, value in state.items()}


def default_max_len(src_lengths: np.ndarray, a: float = 1.5, b: int = 10) -> np.ndarray:
    """A generous per-row output limit (tokens, <eos> included) from the source length."""
    return (np.asarray(src_lengths) * a + b).astype(np.int64)


@dataclass
class Hypothesis:
    tokens: list[int]  # without <bos>; ends with <eos> unless cut at the length limit
    score: float  # normalized: sum of log-probabilities / length ** length_penalty
    log_prob: float  # sum of log-probabilities


@dataclass
class Translation:
    hypotheses: list[Hypothesis] = field(default_factory=list)  # best first (n-best)

    @property
    def tokens(self) -> list[int]:
        return self.hypotheses[0].tokens if self.hypotheses else []


def strip_eos(tokens: list[int], eos_id: int) -> list[int]:
    return tokens[:-1] if tokens and tokens[-1] == eos_id else tokens


# ----------------------------------------------------------------------------- greedy


def greedy(
    encode: EncodeFn,
    step: StepFn,
    src: np.ndarray,
    src_lengths: np.ndarray,
    *,
    bos_id: int,
    eos_id: int,
    max_len: np.ndarray | int | None = None,
    batch_axes: dict[str, int] | None = None,
) -> list[Translation]:
    """Argmax decoding of a batch; finished rows leave the running batch."""
    B = src.shape[0]
    limits = default_max_len(src_lengths) if max_len is None else np.broadcast_to(np.asarray(max_len), (B,))
    memory, state = encode(src, src_lengths)
    rows = np.arange(B)  # running row -> sentence
    lengths = np.asarray(src_lengths)
    prev = np.full(B, bos_id, dtype=np.int64)
    out: list[list[int]] = [[] for _ in range(B)]
    logp_sum = np.zeros(B)
    t = 0
    while rows.size:
        logits, state = step(prev, state, memory, lengths, np.full(rows.size, t, dtype=np.int64))
        logp = log_softmax(logits)  # (b, V)
        best = logp.argmax(-1)  # (b,): the lowest id among equal maxima
        keep = []
        for r, sent in enumerate(rows):
            out[sent].append(int(best[r]))
            logp_sum[sent] += logp[r, best[r]]
            if best[r] != eos_id and len(out[sent]) < limits[sent]:
                keep.append(r)
        t += 1
        if len(keep) < rows.size:  # rows leave; the rest keep their state
            idx = np.asarray(keep, dtype=np.int64)
            rows, prev = rows[idx], best[idx].astype(np.int64)
            state = take_rows(state, idx, batch_axes)
            memory, lengths = memory[idx], lengths[idx]
        else:
            prev = best.astype(np.int64)
    return [
        Translation([Hypothesis(toks, float(lp) / max(1, len(toks)), float(lp))]) for toks, lp in zip(out, logp_sum)
    ]


# ----------------------------------------------------------------------------- beam search


def beam_candidates(scores: np.ndarray, logp: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One sentence's expansion: scores (K,) of its live beams, logp (K, V) -> the n best
    (beam, token, cumulative score), best first, ties to the lower (beam, token)."""
    K, V = logp.shape
    total = (scores[:, None] + logp).reshape(-1)  # (K * V,)
    n = min(n, total.size)
    top = np.argpartition(-total, n - 1)[:n] if n < total.size else np.arange(total.size)
    # argpartition may cut a tie arbitrarily: take everything tied with the n-th score, then order.
    cutoff = total[top].min()
    top = np.flatnonzero(total >= cutoff)
    order = np.lexsort((top, -total[top]))[:n]  # by score desc, then flat index asc
    top = top[order]
    return top // V, top % V, total[top]


def beam_search(
    encode: EncodeFn,
    step: StepFn,
    src: np.ndarray,
    src_lengths: np.ndarray,
    *,
    bos_id: int,
    eos_id: int,
    beam_size: int = 4,
    n_best: int = 1,
    length_penalty: float = 1.0,
    early_stopping: bool = True,
    max_len: np.ndarray | int | None = None,
    batch_axes: dict[str, int] | None = None,
) -> list[Translation]:
    """Beam search for a batch of sentences; returns ``n_best`` hypotheses each, best first."""
    if not 1 <= n_best <= beam_size:
        raise ValueError("need 1 <= n_best <= beam_size")
    B, K = src.shape[0], beam_size
    limits = default_max_len(src_lengths) if max_len is None else np.broadcast_to(np.asarray(max_len), (B,))
    memory, state = encode(src, src_lengths)

    def norm(log_prob: float, length: int) -> float:
        return log_prob / (max(1, length) ** length_penalty)

    # Every sentence starts with one live beam (<bos>); rows are (sentence, beam) pairs, sentence-major.
    sents = list(range(B))  # running sentences
    beams: list[list[list[int]]] = [[[]] for _ in range(B)]  # per sentence: live hypotheses' tokens
    scores: list[np.ndarray] = [np.zeros(1) for _ in range(B)]
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    lengths = np.asarray(src_lengths)
    row_memory, row_lengths = memory, lengths
    prev = np.full(B, bos_id, dtype=np.int64)
    t = 0
    while sents:
        logits, state = step(prev, state, row_memory, row_lengths, np.full(prev.size, t, dtype=np.int64))
        logp = log_softmax(logits)  # (rows, V)
        t += 1
        gather: list[int] = []  # next rows: which current row each continues
        next_prev: list[int] = []
        still: list[int] = []
        row = 0
        for s in sents:
            k = len(beams[s])
            parent, token, total = beam_candidates(scores[s], logp[row : row + k], 2 * K)
            new_beams, new_scores = [], []
            for p, tok, sc in zip(parent.tolist(), token.tolist(), total.tolist()):
                toks = beams[s][p] + [tok]
                if tok == eos_id:
                    finished[s].append(Hypothesis(toks, norm(sc, len(toks)), sc))
                else:
                    new_beams.append(toks)
                    new_scores.append(sc)
                    gather.append(row + p)
                if len(new_beams) == K:
                    break
            finished[s].sort(key=lambda h: -h.score)
            finished[s] = finished[s][:K]
            done = not new_beams or (
                len(finished[s]) >= K
                and (early_stopping or max(norm(x, t) for x in new_scores) <= finished[s][-1].score)
            )
            if not done and t >= limits[s]:  # out of room: live hypotheses finish as they are
                finished[s] += [Hypothesis(b, norm(x, len(b)), x) for b, x in zip(new_beams, new_scores)]
                finished[s].sort(key=lambda h: -h.score)
                done = True
            if done:
                del gather[len(gather) - len(new_beams) :]  # its rows leave the batch
            else:
                beams[s], scores[s] = new_beams, np.asarray(new_scores)
                next_prev += [b[-1] for b in new_beams]
                still.append(s)
            row += k
        sents = still
        if not sents:
            break
        idx = np.asarray(gather, dtype=np.int64)
        state = take_rows(state, idx, batch_axes)
        row_memory, row_lengths = row_memory[idx], row_lengths[idx]
        prev = np.asarray(next_prev, dtype=np.int64)
    return [Translation(f[:n_best]) for f in finished]


# ----------------------------------------------------------------------------- graphs from a manifest


def state_batch_axes(contract: dict) -> dict[str, int]:
    """name -> batch axis, from the manifest's ``streaming["state"]`` specs."""
    return {s["name"]: int(s["batch_axis"]) for s in contract["state"]}


def initial_state(specs: list[dict], batch: int, encoder_outputs: dict[str, np.ndarray]) -> State:
    """A new sequence's state: ``init`` "encoder" -> the encoder graph's output of that name;
    "empty" -> zeros with a 0-long "past" axis (a Transformer cache before the first token)."""
    state: State = {}
    for s in specs:
        if s["init"] == "encoder":
            state[s["name"]] = encoder_outputs[s["name"]]
        elif s["init"] == "empty":
            shape = [batch if d == "batch" else 0 if d == "past" else int(d) for d in s["shape"]]
            state[s["name"]] = np.zeros(shape, dtype=s.get("dtype", "float32"))
        else:
            raise ValueError(f"unknown state init {s['init']!r} for {s['name']!r}")
    return state


def session_callables(encoder, decoder, contract: dict) -> tuple[EncodeFn, StepFn]:
    """``encode``/``step`` over two sessions with ``run(output_names, feeds)`` (ONNX Runtime's
    InferenceSession, or anything shaped like it), as the manifest's ``streaming`` describes them."""
    specs = contract["state"]
    names = [s["name"] for s in specs]
    enc_outputs = ["memory", *(s["name"] for s in specs if s["init"] == "encoder")]
    dec_outputs = ["logits", *(f"{n}_out" for n in names)]
    position_input = contract.get("position_input")

    def encode(src: np.ndarray, src_lengths: np.ndarray) -> tuple[np.ndarray, State]:
        outs = encoder.run(enc_outputs, {"src": src, "src_lengths": src_lengths})
        return outs[0], initial_state(specs, src.shape[0], dict(zip(enc_outputs, outs)))

    def step(prev, state, memory, src_lengths, position):  # numpy in, numpy out
        feeds = {"prev_token": prev, **{n: state[n] for n in names}, "memory": memory, "src_lengths": src_lengths}
        if position_input:
            feeds[position_input] = position
        logits, *new = decoder.run(dec_outputs, feeds)
        return logits, dict(zip(names, new))

    return encode, step
