"""Autoregressive decoding in numpy: greedy and beam search over an ``encode`` and a ``step`` callable.

Shared (like the tokenizers) by the server, which drives ONNX Runtime sessions with it,
and by export, which drives the PyTorch model with it: parity then tests the graphs.

No torch, no ONNX Runtime, no gRPC here: the caller wraps whatever runs the
graphs (ORT sessions in the server, the PyTorch model in export and tests) as

    encode(src (B, S) int64, src_lengths (B,) int64) -> (memory, state)
    step(prev (B,) int64, state, memory, src_lengths, position (B,) int64) -> (log_probs (B, V) float32, state)

where ``memory`` is a tuple of float32 arrays, each with the batch on axis 0 and the
source on axis ``memory_axes[i]`` (1 unless the manifest says otherwise), zero past
each row's length: what the decoder reads of the source, computed once per sentence
(one (B, S, M) array for the recurrent decoders; each Transformer layer's
cross-attention keys (B, heads, head_dim, S) and values (B, heads, S, head_dim), laid
out per head so that no step splits or transposes them), and ``state`` is a dict
name -> array with the batch on axis ``batch_axes[name]`` (as the manifest says: 1
for the recurrent h/c (layers, B, H); 0 for the Transformer's per-layer caches, keys
(B, heads, head_dim, past) and values (B, heads, past, head_dim), whose "past" axis
grows by one each step, ``grow_axes[name]``). ``position`` is the number of tokens
each row has already fed (0 for <bos>).

Everything per sequence lives on the batch axis, so rows can be dropped
(a sentence finished or was cancelled), duplicated (beams) or joined. One
``Search`` per sentence (``GreedySearch``, ``BeamSearch``) decides from its
rows' log-probabilities which rows continue with which tokens; a
``RunningBatch`` runs one ``step`` for the rows of every sentence in it and
lets sentences join and leave between any two steps. ``greedy`` and
``beam_search`` run a fixed batch through it to the end; the server's
scheduler feeds it continuously (iteration-level batching).

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

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

State = dict[str, np.ndarray]
Memory = tuple[np.ndarray, ...]  # each with the batch on axis 0, zero past each row's source length
EncodeFn = Callable[[np.ndarray, np.ndarray], tuple[Memory, State]]
StepFn = Callable[[np.ndarray, State, Memory, np.ndarray, np.ndarray], tuple[np.ndarray, State]]


def log_softmax_(logits: np.ndarray) -> np.ndarray:
    """(B, V) logits -> (B, V) log-probabilities written over them, in their own precision
    (float32: float64 took 3-4x as long at a few hundred rows); the searches add them up in
    float64, so a long hypothesis's score does not drift. In place: at 128 rows of 8,000 the
    temporaries cost more than the arithmetic. For decoder graphs that end in logits (those
    exported before the graphs took the log-softmax in, where it costs 0.14 ms at 32 rows
    of 8,000 against numpy's 0.35)."""
    logits -= logits.max(axis=-1, keepdims=True)  # (B, V), avoids overflow
    logits -= np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    return logits


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


# ----------------------------------------------------------------------------- one sentence's search


def beam_candidates(
    scores: np.ndarray, logp: np.ndarray, n: int, best: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One sentence's expansion: scores (K,) of its live beams, logp (K, V) -> the n best
    (beam, token, cumulative score), best first, ties to the lower (beam, token). ``best``:
    each row's best n tokens if already known (``row_best``, taken for a whole batch)."""
    K, V = logp.shape
    if best is not None:
        beam, token = np.repeat(np.arange(K), n), best[:, :n].ravel()
    elif n < V:
        # A row adds one score to all its tokens, so the overall best n lie among each row's
        # best n: shortlist those instead of scoring K x V.
        beam, token = _row_best(logp, n)
    else:
        beam, token = np.divmod(np.arange(K * V), V)
    total = scores[beam] + logp[beam, token].astype(np.float64)  # (shortlist,)
    n = min(n, total.size)
    # Everything tied with the n-th score stays in, then the order decides.
    cutoff = np.partition(total, total.size - n)[total.size - n]
    keep = np.flatnonzero(total >= cutoff)
    order = keep[np.lexsort((beam[keep] * V + token[keep], -total[keep]))][:n]  # score desc, (beam, token) asc
    return beam[order], token[order], total[order]


def _row_best(logp: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(beam, token) of each row's best n (``row_best``). A row with fewer than n finite
    entries takes a partition instead, which keeps everything tied with the row's n-th."""
    K, V = logp.shape
    best = row_best(logp, n)
    if best is None:
        row_nth = np.partition(logp, V - n, axis=1)[:, V - n]  # (K,) each row's n-th best
        return np.nonzero(logp >= row_nth[:, None])
    return np.repeat(np.arange(K), n), best.ravel()


_GROUP = 64  # tokens per group in row_best's first pass
_MANY_ROWS = 16  # from here the groups pay: below, numpy's cost per call outweighs the pass they save


def row_best(logp: np.ndarray, n: int) -> np.ndarray | None:
    """(R, V) log-probabilities -> (R, n) token ids: each row's best n under (log-probability
    desc, token asc), the order the final pick uses within a row; None if a row has fewer
    than n finite entries. n passes of argmax (the lowest index among equal maxima); over
    many rows, only over the tokens of each row's best groups (``_shortlist``). For the
    beams of 32 beam-4 sentences (128 rows of 8,000, n = 8): 0.97 ms, against 2.3 for the
    passes over each sentence's whole rows."""
    R, V = logp.shape
    token, work = _shortlist(logp, n) if R >= _MANY_ROWS else (None, logp.copy())  # work: (R, C)
    rows = np.arange(R)
    best = np.empty((R, n), dtype=np.int64)  # (R, n)
    for j in range(n):
        at = work.argmax(axis=1)  # (R,)
        if not np.isfinite(work[rows, at]).all():  # a row ran out: argmax would repeat itself
            return None
        best[:, j] = at if token is None else token[rows, at]
        work[rows, at] = -np.inf
    return best


def _shortlist(logp: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's candidates for its best n: token ids (R, C) in ascending order and their
    log-probabilities (R, C), a copy. Tokens fall into groups of ``_GROUP`` (group b: b,
    b + G, b + 2G, ... for G groups, so that the pass of maxima runs along memory); a row's
    best n lie in its n groups with the highest maxima (above any other group stand n
    groups with a higher maximum), ties included."""
    R, V = logp.shape
    groups = -(-V // _GROUP)
    if groups * _GROUP != V:
        logp = np.pad(logp, ((0, 0), (0, groups * _GROUP - V)), constant_values=-np.inf)
    tops = logp.reshape(R, _GROUP, groups).max(axis=1)  # (R, groups): token k * groups + b is in group b
    if groups > n:
        nth = np.partition(tops, groups - n, axis=1)[:, groups - n]  # (R,) each row's n-th group maximum
        m = int((tops >= nth[:, None]).sum(axis=1).max())  # groups a row may need (more on ties)
        chosen = np.sort(np.argpartition(tops, groups - m, axis=1)[:, groups - m :], axis=1)  # (R, m)
    else:
        chosen = np.broadcast_to(np.arange(groups), (R, groups))
    token = (np.arange(_GROUP)[:, None] * groups + chosen[:, None, :]).reshape(R, -1)  # (R, C), ascending
    return token, logp.ravel()[token + (np.arange(R) * logp.shape[1])[:, None]]


_NONE = np.zeros(0, dtype=np.int64)


class Search(Protocol):
    """One sentence's decoding rule. It owns ``rows`` consecutive rows of the running batch."""

    done: bool
    candidates: int  # of each row's best tokens ``advance`` reads (0: it reads the rows alone)

    @property
    def max_rows(self) -> int:
        """The most rows it will ever hold (what a scheduler must reserve for it)."""

    def advance(self, logp: np.ndarray, best: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Log-probabilities (rows, V) of its rows -> the rows to continue: (parent row within
        its own block, next token), both (rows',); empty once ``done``. ``best``: each row's
        best tokens (rows, >= ``candidates``) in ``row_best``'s order, when the caller took
        them for many sentences at once."""

    def committed(self) -> list[int]:
        """Tokens already certain to open the final best hypothesis (for streaming)."""

    def result(self) -> Translation: ...


class GreedySearch:
    """Argmax, one row."""

    max_rows = 1
    candidates = 0

    def __init__(self, eos_id: int, limit: int) -> None:
        self.eos_id, self.limit = eos_id, limit
        self.tokens: list[int] = []
        self.log_prob = 0.0
        self.done = False

    def advance(self, logp: np.ndarray, best: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        token = int(logp[0].argmax())  # the lowest id among equal maxima
        self.tokens.append(token)
        self.log_prob += float(logp[0, token])
        self.done = token == self.eos_id or len(self.tokens) >= self.limit
        if self.done:
            return _NONE, _NONE
        return np.zeros(1, dtype=np.int64), np.array([token], dtype=np.int64)

    def committed(self) -> list[int]:
        return strip_eos(self.tokens, self.eos_id)

    def result(self) -> Translation:
        lp = self.log_prob
        return Translation([Hypothesis(list(self.tokens), lp / max(1, len(self.tokens)), lp)])


class BeamSearch:
    """Beam search for one sentence (see the module docstring for the rule)."""

    def __init__(
        self,
        eos_id: int,
        limit: int,
        beam_size: int = 4,
        n_best: int = 1,
        length_penalty: float = 1.0,
        early_stopping: bool = True,
    ) -> None:
        if not 1 <= n_best <= beam_size:
            raise ValueError("need 1 <= n_best <= beam_size")
        self.eos_id, self.limit, self.K, self.n_best = eos_id, limit, beam_size, n_best
        self.candidates = 2 * beam_size
        self.length_penalty, self.early_stopping = length_penalty, early_stopping
        self.beams: list[list[int]] = [[]]  # live hypotheses' tokens; one (<bos>) to start
        self.scores = np.zeros(1)
        self.finished: list[Hypothesis] = []
        self.t = 0
        self.done = False

    @property
    def max_rows(self) -> int:
        return self.K

    def _norm(self, log_prob: float, length: int) -> float:
        return log_prob / (max(1, length) ** self.length_penalty)

    def advance(self, logp: np.ndarray, best: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        self.t += 1
        K = self.K
        parents, tokens, totals = beam_candidates(self.scores, logp, self.candidates, best)
        beams, scores, keep = [], [], []
        for p, tok, sc in zip(parents.tolist(), tokens.tolist(), totals.tolist()):
            toks = self.beams[p] + [tok]
            if tok == self.eos_id:
                self.finished.append(Hypothesis(toks, self._norm(sc, len(toks)), sc))
            else:
                beams.append(toks)
                scores.append(sc)
                keep.append(p)
            if len(beams) == K:
                break
        self.finished.sort(key=lambda h: -h.score)
        del self.finished[K:]
        done = not beams or (
            len(self.finished) >= K
            and (self.early_stopping or max(self._norm(x, self.t) for x in scores) <= self.finished[-1].score)
        )
        if not done and self.t >= self.limit:  # out of room: live hypotheses finish as they are
            self.finished += [Hypothesis(b, self._norm(x, len(b)), x) for b, x in zip(beams, scores)]
            self.finished.sort(key=lambda h: -h.score)
            done = True
        self.done = done
        if done:
            return _NONE, _NONE
        self.beams, self.scores = beams, np.asarray(scores)
        return np.asarray(keep, dtype=np.int64), np.asarray([b[-1] for b in beams], dtype=np.int64)

    def committed(self) -> list[int]:
        # The final best is a kept finished hypothesis or extends a live one: their
        # common prefix cannot change any more.
        if self.done:
            return strip_eos(self.result().tokens, self.eos_id)
        seqs = self.beams + [h.tokens for h in self.finished]
        n = min(len(s) for s in seqs)
        for i in range(n):
            if any(s[i] != seqs[0][i] for s in seqs):
                n = i
                break
        return strip_eos(seqs[0][:n], self.eos_id)

    def result(self) -> Translation:
        return Translation(self.finished[: self.n_best])


# ----------------------------------------------------------------------------- the running batch


# Slots of growing state (and of memory) nobody reads are trimmed once there are this
# many: the trim is a copy too.
_TRIM_SLOTS = 8


@dataclass
class _Member:
    key: Hashable
    search: Search | None  # None: spare rows, left by a sentence that finished or was removed
    rows: int  # its consecutive rows in the batch
    position: int  # tokens each of its rows has fed (0 before <bos>; spare rows stay at 0)


class RunningBatch:
    """Sequences decoded together, one ``step`` call per iteration for all of them.

    Sentences join (``add``, already encoded) and leave (finished, or ``remove``d)
    between any two steps: continuous batching. Leaving compacts the state (a copy)
    unless ``spare`` allows otherwise: then a leaving sentence's rows stay, stepped and
    unread, until joining sentences take them over or spare rows pass that share of
    the batch, so that neither leaving nor joining copies the state (worth it where a
    copy costs more than stepping a few rows: copying the full Transformer's caches at
    32 rows costs about a quarter of a step; one row, a thirty-second). A sentence in
    a spare row starts at position 0, so it reads none of the row's old history; its
    memory is zero-padded to the batch's source length (rows attend only up to their
    own ``src_lengths``) along each tensor's source axis, ``memory_axes`` (1 if not
    given). Sentences that find no spare row are appended: their
    growing state (the Transformer's caches, ``grow_axes``) left-padded to the batch's
    past, since a row's history is its last ``position`` slots. Unread history and
    memory are trimmed once ``_TRIM_SLOTS`` of them have gathered.

    With ``static``, a finished sentence keeps its rows, stepped and unread, and
    ``step`` hands back every sentence at once when the last one ends: the padded batch
    of a one-shot ``generate`` call, kept as the baseline continuous batching is
    measured against.
    """

    def __init__(
        self,
        step: StepFn,
        *,
        bos_id: int,
        batch_axes: dict[str, int] | None = None,
        grow_axes: dict[str, int] | None = None,
        memory_axes: Sequence[int] | None = None,
        static: bool = False,
        spare: float = 0.0,
    ) -> None:
        self._step, self._bos, self._static, self._spare = step, bos_id, static, spare
        self._batch_axes, self._grow_axes = batch_axes or {}, grow_axes or {}
        self._memory_axes = tuple(memory_axes) if memory_axes is not None else None
        self.members: list[_Member] = []
        self._live = 0  # members with a search (spare rows are not sentences)
        self._state: State = {}
        self._memory: Memory = ()  # each (R, ...), its source on its memory axis
        self._lengths = _NONE  # (R,)
        self._prev = _NONE  # (R,)

    def __len__(self) -> int:
        return self._live

    @property
    def rows(self) -> int:
        return int(self._prev.size)

    def add(
        self, keys: Sequence[Hashable], searches: Sequence[Search], memory: Memory, src_lengths: np.ndarray,
        state: State,
    ) -> None:
        """Join encoded sentences (one row each: memory arrays (n, ...), src_lengths (n,), state rows)."""
        joining = [_Member(k, s, 1, 0) for k, s in zip(keys, searches)]
        src_lengths = np.asarray(src_lengths, dtype=np.int64)
        self._live += len(joining)
        if self._memory_axes is None:
            self._memory_axes = (1,) * len(memory)
        if not self.members:
            self._memory, self._lengths, self._state = tuple(memory), src_lengths.copy(), dict(state)
            self._prev = np.full(len(joining), self._bos, dtype=np.int64)
            self.members = joining
            return
        taken = self._take_spare(joining, memory, src_lengths, state)
        if taken == len(joining):
            return
        rest = np.arange(taken, len(joining))
        S = max(self._source_len(self._memory), self._source_len(memory))
        self._memory = tuple(
            np.concatenate([_pad_to(old, axis, S), _pad_to(new[taken:], axis, S)])
            for old, new, axis in zip(self._memory, memory, self._memory_axes)
        )
        self._lengths = np.concatenate([self._lengths, src_lengths[taken:]])
        self._state = {
            name: self._join(name, value, np.take(state[name], rest, axis=self._batch_axes.get(name, 1)))
            for name, value in self._state.items()
        }
        self._prev = np.concatenate([self._prev, np.full(rest.size, self._bos, dtype=np.int64)])
        self.members += joining[taken:]

    def _take_spare(self, joining: list[_Member], memory: Memory, src_lengths: np.ndarray, state: State) -> int:
        """Put the first joining sentences into spare rows, in place; returns how many."""
        if all(m.search is not None for m in self.members):
            return 0  # no spare rows
        if any(state[name].shape[axis] for name, axis in self._grow_axes.items() if name in state):
            return 0  # a history to place: the append path pads it
        slots: list[int] = []
        members: list[_Member] = []
        row = 0
        for m in self.members:
            n = min(m.rows, len(joining) - len(slots)) if m.search is None else 0
            members += joining[len(slots) : len(slots) + n]
            slots += range(row, row + n)
            if m.rows > n:
                members.append(m if n == 0 else _Member(None, None, m.rows - n, 0))
            row += m.rows
        if not slots:
            return 0
        n = len(slots)
        self.members = members
        S = max(self._source_len(self._memory), self._source_len(memory))
        self._memory = tuple(_pad_to(old, axis, S) for old, axis in zip(self._memory, self._memory_axes))
        s = self._source_len(memory)
        for old, new, axis in zip(self._memory, memory, self._memory_axes):
            old[_along(old.ndim, axis, slice(0, s), slots)] = new[:n]
            old[_along(old.ndim, axis, slice(s, None), slots)] = 0.0  # past its source: nothing of the row before
        self._lengths[slots] = src_lengths[:n]
        self._prev[slots] = self._bos
        for name, value in self._state.items():
            if name in self._grow_axes:
                continue  # at position 0 a row reads none of its slots' history
            axis = self._batch_axes.get(name, 1)
            where: list[object] = [slice(None)] * value.ndim
            where[axis] = slots
            value[tuple(where)] = np.take(state[name], np.arange(n), axis=axis)
        return n

    def _join(self, name: str, old: np.ndarray, new: np.ndarray) -> np.ndarray:
        grow = self._grow_axes.get(name)
        if grow is not None:  # right-aligned history: pad the shorter on the left
            past = max(old.shape[grow], new.shape[grow])
            old, new = _pad_to(old, grow, past, left=True), _pad_to(new, grow, past, left=True)
        return np.concatenate([old, new], axis=self._batch_axes.get(name, 1))

    def step(self) -> list[_Member]:
        """One decoder step for every row; returns the members that finished (and left)."""
        positions = np.repeat([m.position for m in self.members], [m.rows for m in self.members])
        logp, state = self._step(self._prev, self._state, self._memory, self._lengths, positions.astype(np.int64))
        best = self._best(logp)
        gather, prev, kept, finished = [], [], [], []
        row = 0
        for m in self.members:
            rows = m.rows
            if m.search is not None and not m.search.done:
                parents, tokens = m.search.advance(logp[row : row + rows], best.get(row))
                m.position += 1
            if m.search is None or m.search.done:  # rows nobody reads step on as they are
                parents, tokens = np.arange(rows), self._prev[row : row + rows]
                if m.search is not None:
                    finished.append(m)
                    if not self._static:  # it leaves; its rows stay, spare
                        m = _Member(None, None, rows, 0)
            m.rows = int(parents.size)
            gather.append(parents + row)
            prev.append(tokens)
            kept.append(m)
            row += rows
        self._state = state
        if self._static and len(finished) < len(kept):
            finished = []  # the batch waits for its longest member, then all leave together
        self._live -= len(finished)
        self._keep(kept, gather, prev)
        return finished

    def _best(self, logp: np.ndarray) -> dict[int, np.ndarray]:
        """Each beam sentence's rows' best tokens, by its first row, taken for all at once: one
        ``row_best`` over every beam row costs a fraction of one per sentence (numpy's cost
        per call)."""
        spans, n, row = [], 0, 0
        for m in self.members:
            if m.search is not None and not m.search.done and m.search.candidates:
                spans.append((row, m.rows))
                n = max(n, m.search.candidates)
            row += m.rows
        if not spans or n >= logp.shape[1]:
            return {}
        best = row_best(logp[np.concatenate([np.arange(r, r + k) for r, k in spans])], n)
        if best is None:  # a row with fewer than n possible tokens: each sentence takes its own
            return {}
        starts = np.cumsum([0] + [k for _, k in spans])
        return {r: best[a:b] for (r, _), a, b in zip(spans, starts[:-1], starts[1:])}

    def remove(self, keys: set[Hashable]) -> list[_Member]:
        """Drop sentences now (cancelled, out of time); returns them. Their rows become spare."""
        gone = [m for m in self.members if m.search is not None and m.key in keys]
        if gone:
            members, gather, prev, row = [], [], [], 0
            for m in self.members:
                left = m.search is not None and m.key in keys
                members.append(_Member(None, None, m.rows, 0) if left else m)
                gather.append(np.arange(row, row + m.rows))
                prev.append(self._prev[row : row + m.rows])
                row += m.rows
            self._live -= len(gone)
            self._keep(members, gather, prev)
        return gone

    def _keep(self, kept: list[_Member], gather: list[np.ndarray], prev: list[np.ndarray]) -> None:
        """The new rows: ``gather`` names each member's rows in the state just computed,
        ``prev`` their next tokens. Compacts spare rows away and trims unread slots when due."""
        if not self._live:
            self.members, self._state, self._prev, self._lengths = [], {}, _NONE, _NONE
            self._memory = ()
            return
        idx = np.concatenate(gather)
        same_rows = idx.size == self._prev.size and not (idx - np.arange(idx.size)).any()
        spare = sum(m.rows for m in kept if m.search is None)
        # Spare rows are kept only while they save a copy: a beam's reordered rows need one anyway.
        if spare and (not same_rows or spare > self._spare * idx.size):
            chosen = [i for i, m in enumerate(kept) if m.search is not None]
            kept, gather, prev = [kept[i] for i in chosen], [gather[i] for i in chosen], [prev[i] for i in chosen]
            idx, same_rows = np.concatenate(gather), False
        self.members, self._prev = kept, np.concatenate(prev).astype(np.int64)
        read = np.concatenate([g for g, m in zip(gather, kept) if m.search is not None])
        S = max(1, int(self._lengths[read].max()))
        trim = self._source_len(self._memory) - S >= _TRIM_SLOTS
        memory = self._memory
        if trim:
            memory = tuple(m[_along(m.ndim, axis, slice(0, S))] for m, axis in zip(memory, self._memory_axes))
        past = max(m.position for m in kept if m.search is not None)
        state = {name: self._trimmed(name, value, past) for name, value in self._state.items()}
        if same_rows:  # no gather
            self._memory = tuple(np.ascontiguousarray(m) for m in memory)
            self._state = {name: np.ascontiguousarray(value) for name, value in state.items()}
        else:  # one copy, trims included
            self._lengths, self._memory = self._lengths[idx], tuple(m[idx] for m in memory)
            self._state = take_rows(state, idx, self._batch_axes)
        if trim:  # a spare row's length may reach past the memory left
            np.minimum(self._lengths, S, out=self._lengths)

    def _source_len(self, memory: Memory) -> int:
        assert self._memory_axes is not None
        return memory[0].shape[self._memory_axes[0]]

    def _trimmed(self, name: str, value: np.ndarray, past: int) -> np.ndarray:
        """``value`` without the history slots no row reads, once there are enough of them."""
        axis = self._grow_axes.get(name)
        if axis is None or value.shape[axis] - past < _TRIM_SLOTS:
            return value
        return value[_along(value.ndim, axis, slice(value.shape[axis] - past, None))]


def _along(ndim: int, axis: int, span: slice, rows: object = slice(None)) -> tuple[object, ...]:
    """An index taking ``span`` along ``axis`` (and ``rows`` of the batch, axis 0)."""
    where: list[object] = [rows] + [slice(None)] * (ndim - 1)
    where[axis] = span
    return tuple(where)


def _pad_to(x: np.ndarray, axis: int, n: int, left: bool = False) -> np.ndarray:
    """Zero-pad ``axis`` to length ``n`` (at the start if ``left``)."""
    if x.shape[axis] >= n:
        return x
    out = np.zeros((*x.shape[:axis], n, *x.shape[axis + 1 :]), dtype=x.dtype)
    where: list[object] = [slice(None)] * x.ndim
    where[axis] = slice(n - x.shape[axis], None) if left else slice(0, x.shape[axis])
    out[tuple(where)] = x  # np.pad does the same at several times the cost for arrays this small
    return out


# ----------------------------------------------------------------------------- whole batches


def _limits(src_lengths: np.ndarray, max_len: np.ndarray | int | None) -> np.ndarray:
    B = np.asarray(src_lengths).shape[0]
    return default_max_len(src_lengths) if max_len is None else np.broadcast_to(np.asarray(max_len), (B,))


def decode(
    encode: EncodeFn,
    step: StepFn,
    src: np.ndarray,
    src_lengths: np.ndarray,
    searches: Sequence[Search],
    *,
    bos_id: int,
    batch_axes: dict[str, int] | None = None,
    memory_axes: Sequence[int] | None = None,
) -> list[Translation]:
    """Run one search per sentence of a batch to the end; finished rows leave every step."""
    memory, state = encode(src, src_lengths)
    batch = RunningBatch(step, bos_id=bos_id, batch_axes=batch_axes, memory_axes=memory_axes)
    batch.add(range(len(searches)), searches, memory, np.asarray(src_lengths), state)
    while batch:
        batch.step()
    return [s.result() for s in searches]


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
    memory_axes: Sequence[int] | None = None,
) -> list[Translation]:
    """Argmax decoding of a batch."""
    searches = [GreedySearch(eos_id, int(n)) for n in _limits(src_lengths, max_len)]
    return decode(encode, step, src, src_lengths, searches, bos_id=bos_id, batch_axes=batch_axes,
                  memory_axes=memory_axes)


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
    memory_axes: Sequence[int] | None = None,
) -> list[Translation]:
    """Beam search for a batch of sentences; returns ``n_best`` hypotheses each, best first."""
    searches = [
        BeamSearch(eos_id, int(n), beam_size, n_best, length_penalty, early_stopping)
        for n in _limits(src_lengths, max_len)
    ]
    return decode(encode, step, src, src_lengths, searches, bos_id=bos_id, batch_axes=batch_axes,
                  memory_axes=memory_axes)


# ----------------------------------------------------------------------------- graphs from a manifest


def state_batch_axes(contract: dict) -> dict[str, int]:
    """name -> batch axis, from the manifest's ``streaming["state"]`` specs."""
    return {s["name"]: int(s["batch_axis"]) for s in contract["state"]}


def state_grow_axes(contract: dict) -> dict[str, int]:
    """name -> the axis that grows by one each step (the Transformer's caches), from the manifest."""
    return {s["name"]: int(s["grow_axis"]) for s in contract["state"] if s.get("grow_axis") is not None}


def memory_specs(contract: dict) -> list[dict]:
    """The memory tensors (name, source axis), in the order ``encode`` returns them; exports
    from before the memory had several tensors name one, ``memory`` (batch, source, width)."""
    return contract.get("memory") or [{"name": "memory", "source_axis": 1}]


def memory_axes(contract: dict) -> tuple[int, ...]:
    """Each memory tensor's source axis, from the manifest (``RunningBatch(memory_axes=...)``)."""
    return tuple(int(m["source_axis"]) for m in memory_specs(contract))


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
    memory_names = [m["name"] for m in memory_specs(contract)]
    enc_outputs = [*memory_names, *(s["name"] for s in specs if s["init"] == "encoder")]
    scores = contract["decoder_outputs"][0]["name"]  # "log_probs", or "logits" from graphs exported before
    dec_outputs = [scores, *(f"{n}_out" for n in names)]
    position_input = contract.get("position_input")

    def encode(src: np.ndarray, src_lengths: np.ndarray) -> tuple[Memory, State]:
        outs = encoder.run(enc_outputs, {"src": src, "src_lengths": src_lengths})
        memory = tuple(outs[: len(memory_names)])
        return memory, initial_state(specs, src.shape[0], dict(zip(enc_outputs, outs)))

    def step(prev, state, memory, src_lengths, position):  # numpy in, numpy out
        feeds = {"prev_token": prev, **{n: state[n] for n in names}, **dict(zip(memory_names, memory)),
                 "src_lengths": src_lengths}
        if position_input:
            feeds[position_input] = position
        logp, *new = decoder.run(dec_outputs, feeds)
        return (log_softmax_(logp) if scores == "logits" else logp), dict(zip(names, new))

    return encode, step
