"""The numpy decoding loop: sentences joining and leaving a running batch change nothing.

A toy decoder with a Transformer-like cache stands in for the graphs (see
tests/toy_decoders.py): a wrongly aligned or padded cache changes its tokens.
"""

from __future__ import annotations

import numpy as np
import pytest

from seqserve import decoding
from seqserve.decoding import BeamSearch, GreedySearch, RunningBatch
from tests.toy_decoders import BOS, EOS, MEMORY_AXES, V, CacheLM


def sources(rng: np.random.Generator, n: int) -> list[list[int]]:
    return [list(rng.integers(4, V, size=int(rng.integers(1, 7)))) for _ in range(n)]


def encode_one(lm: CacheLM, ids: list[int]) -> tuple[decoding.Memory, np.ndarray, decoding.State]:
    src = np.array([ids], np.int64)
    lengths = np.array([len(ids)], np.int64)
    memory, state = lm.encode(src, lengths)
    return memory, lengths, state


def encode_one_each(lm: CacheLM, srcs: list[list[int]]) -> tuple[decoding.Memory, np.ndarray, decoding.State]:
    """Sentences encoded together (padded to the longest), as the scheduler does."""
    lengths = np.array([len(ids) for ids in srcs], np.int64)
    src = np.zeros((len(srcs), int(lengths.max())), np.int64)
    for i, ids in enumerate(srcs):
        src[i, : len(ids)] = ids
    memory, state = lm.encode(src, lengths)
    return memory, lengths, state


def make_search(kind: str, limit: int) -> decoding.Search:
    return GreedySearch(EOS, limit) if kind == "greedy" else BeamSearch(EOS, limit, beam_size=3, n_best=2)


def alone(lm: CacheLM, ids: list[int], kind: str, limit: int) -> list[list[int]]:
    search = make_search(kind, limit)
    batch = RunningBatch(lm.step, bos_id=BOS, grow_axes={"k": 2}, memory_axes=MEMORY_AXES)
    batch.add([0], [search], *encode_one(lm, ids))
    while batch:
        batch.step()
    return [h.tokens for h in search.result().hypotheses]


@pytest.mark.parametrize("spare", [0.0, 0.5])  # leaving rows compacted at once, or taken over by joining ones
@pytest.mark.parametrize("kind", ["greedy", "beam"])
@pytest.mark.parametrize("seed", range(6))
def test_joining_at_any_step_equals_decoding_alone(kind: str, seed: int, spare: float) -> None:
    lm, rng = CacheLM(seed), np.random.default_rng(seed)
    srcs = sources(rng, 6)
    limits = [int(x) for x in rng.integers(2, 12, size=6)]
    joins = sorted(int(x) for x in rng.integers(0, 8, size=6))  # the step before which each joins
    searches = [make_search(kind, n) for n in limits]
    batch = RunningBatch(lm.step, bos_id=BOS, grow_axes={"k": 2}, memory_axes=MEMORY_AXES, spare=spare)
    step = 0
    while step <= max(joins) or batch:
        for i, at in enumerate(joins):
            if at == step:
                batch.add([i], [searches[i]], *encode_one(lm, srcs[i]))
        if batch:
            batch.step()
        step += 1
    for i, s in enumerate(searches):
        assert [h.tokens for h in s.result().hypotheses] == alone(lm, srcs[i], kind, limits[i])


@pytest.mark.parametrize("kind", ["greedy", "beam"])
def test_a_static_batch_keeps_every_row_until_its_longest_member_ends(kind: str) -> None:
    lm, rng = CacheLM(4), np.random.default_rng(4)
    srcs = sources(rng, 5)
    limits = [2, 9, 4, 12, 6]
    searches = [make_search(kind, n) for n in limits]
    batch = RunningBatch(lm.step, bos_id=BOS, grow_axes={"k": 2}, memory_axes=MEMORY_AXES, static=True)
    for i, ids in enumerate(srcs):
        batch.add([i], [searches[i]], *encode_one(lm, ids))
    steps, rows = 0, []
    while batch:
        finished = batch.step()
        steps += 1
        rows.append(batch.rows)
        if batch:
            assert finished == []  # nobody leaves before the longest member is done
    assert {m.key for m in finished} == set(range(5))
    took = [len(s.tokens) if kind == "greedy" else s.t for s in searches]  # steps each needed
    assert steps == max(took) and min(took) < steps
    if kind == "greedy":
        assert rows[:-1] == [5] * (steps - 1)  # finished rows kept stepping
    for i, s in enumerate(searches):
        assert [h.tokens for h in s.result().hypotheses] == alone(lm, srcs[i], kind, limits[i])


def test_removed_sentences_leave_and_the_rest_is_unchanged() -> None:
    lm, rng = CacheLM(7), np.random.default_rng(7)
    srcs = sources(rng, 4)
    searches = [make_search("beam", 20) for _ in srcs]
    batch = RunningBatch(lm.step, bos_id=BOS, grow_axes={"k": 2}, memory_axes=MEMORY_AXES)
    for i, ids in enumerate(srcs):
        batch.add([i], [searches[i]], *encode_one(lm, ids))
    batch.step()
    batch.step()
    rows_before = batch.rows
    gone = batch.remove({1, 3})
    assert {m.key for m in gone} == {1, 3}
    assert batch.rows == rows_before - sum(m.rows for m in gone)
    while batch:
        batch.step()
    for i in (0, 2):
        assert [h.tokens for h in searches[i].result().hypotheses] == alone(lm, srcs[i], "beam", 20)
    assert batch.rows == 0


@pytest.mark.parametrize("kind", ["greedy", "beam"])
def test_committed_tokens_only_grow_and_open_the_final_answer(kind: str) -> None:
    lm = CacheLM(3)
    for seed in range(10):
        ids = sources(np.random.default_rng(seed), 1)[0]
        search = make_search(kind, 15)
        batch = RunningBatch(lm.step, bos_id=BOS, grow_axes={"k": 2}, memory_axes=MEMORY_AXES)
        batch.add([0], [search], *encode_one(lm, ids))
        seen: list[list[int]] = [[]]
        while batch:
            batch.step()
            now = search.committed()
            assert now[: len(seen[-1])] == seen[-1]
            seen.append(now)
        assert seen[-1] == decoding.strip_eos(search.result().tokens, EOS)


def test_the_cache_is_trimmed_when_the_longest_row_leaves() -> None:
    lm = CacheLM(1)
    lm.table[:, EOS] = -1e9  # rows run until removed
    batch = RunningBatch(lm.step, bos_id=BOS, grow_axes={"k": 2}, memory_axes=MEMORY_AXES)
    batch.add([0], [GreedySearch(EOS, 10_000)], *encode_one(lm, [5, 6]))
    for _ in range(12):
        batch.step()
    batch.add([1], [GreedySearch(EOS, 10_000)], *encode_one(lm, [7]))
    batch.step()
    assert batch._state["k"].shape[2] == 13  # the first row's 13 slots; the new row left-padded
    batch.remove({0})
    assert batch._state["k"].shape[2] == 1 and batch.rows == 1


def test_a_joining_sentence_takes_over_a_finished_ones_rows_in_place() -> None:
    lm, rng = CacheLM(2), np.random.default_rng(2)
    lm.table[:, EOS] = -1e9  # rows run to their limits
    srcs, limits = sources(rng, 6), [10, 3, 10, 10, 10, 6]
    searches = [GreedySearch(EOS, n) for n in limits]
    batch = RunningBatch(lm.step, bos_id=BOS, grow_axes={"k": 2}, memory_axes=MEMORY_AXES, spare=0.25)
    batch.add(range(5), searches[:5], *encode_one_each(lm, srcs[:5]))
    for _ in range(3):
        batch.step()
    assert (len(batch), batch.rows) == (4, 5)  # the second left; its row stays, spare
    cache = batch._state["k"]
    batch.add([5], [searches[5]], *encode_one(lm, srcs[5]))
    assert (len(batch), batch.rows) == (5, 5) and batch._state["k"] is cache  # taken over in place
    while batch:
        batch.step()
    for i, s in enumerate(searches):
        assert s.tokens == alone(lm, srcs[i], "greedy", limits[i])[0]


def test_beam_search_needs_n_best_within_the_beam() -> None:
    with pytest.raises(ValueError):
        BeamSearch(EOS, 10, beam_size=2, n_best=3)


def _candidates_by_brute_force(scores: np.ndarray, logp: np.ndarray, n: int):
    """Every (beam, token) scored, sorted by score desc, then (beam, token) asc."""
    K, V = logp.shape
    beam, token = np.divmod(np.arange(K * V), V)
    total = scores[beam] + logp[beam, token].astype(np.float64)
    order = sorted(range(K * V), key=lambda i: (-total[i], beam[i], token[i]))[:n]
    return beam[order], token[order], total[order]


@pytest.mark.parametrize("seed", range(40))
def test_beam_candidates_pick_what_scoring_every_token_picks_ties_and_minus_infinity_included(seed: int) -> None:
    rng = np.random.default_rng(seed)
    K, V, n = int(rng.integers(1, 5)), int(rng.integers(3, 40)), int(rng.integers(1, 9))
    # Few distinct values: many ties within and across rows; some tokens impossible.
    logp = -rng.integers(0, 4, size=(K, V)).astype(np.float32)
    logp[rng.random((K, V)) < 0.3] = -np.inf
    scores = -rng.integers(0, 3, size=K).astype(np.float64)
    got = decoding.beam_candidates(scores, logp, n)
    want = _candidates_by_brute_force(scores, logp, n)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("seed", range(30))
def test_row_best_is_each_rows_best_in_order(seed: int) -> None:
    """Few rows (whole rows scanned) and many (groups of tokens first), vocabularies of many
    groups and not always a whole number of them, ties within and across groups."""
    rng = np.random.default_rng(seed)
    R, V, n = int(rng.integers(1, 40)), int(rng.integers(65, 900)), int(rng.integers(1, 17))
    logp = -rng.integers(0, 6, size=(R, V)).astype(np.float32) - 10.0  # few distinct values: ties
    logp[rng.random((R, V)) < 0.2] = -np.inf
    logp[rng.random((R, V)) < 0.01] = -1.0  # a few better tokens scattered over the blocks
    if seed % 5 == 0:
        logp[0, n // 2 :] = -np.inf  # a row with fewer than n possible tokens
    got = decoding.row_best(logp, n)
    if (np.isfinite(logp).sum(axis=1) < n).any():
        assert got is None
    else:
        want = [sorted(range(V), key=lambda t: (-logp[r, t], t))[:n] for r in range(R)]
        np.testing.assert_array_equal(got, np.array(want))
    scores = -rng.integers(0, 3, size=R).astype(np.float64)
    for g, w in zip(decoding.beam_candidates(scores, logp, n), _candidates_by_brute_force(scores, logp, n)):
        np.testing.assert_array_equal(g, w)


class _Session:
    """Shaped like an ORT session: ``run(names, feeds)`` -> the named outputs."""

    def __init__(self, outputs: dict[str, np.ndarray]) -> None:
        self.outputs = outputs

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [self.outputs[n] for n in names]


@pytest.mark.parametrize("output", ["log_probs", "logits"])
def test_session_step_returns_log_probabilities(output: str) -> None:
    """Graphs end in log_probs now; those exported before end in logits and still decode the same."""
    logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]], np.float32)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    contract = {"state": [{"name": "h", "init": "encoder", "batch_axis": 1}], "decoder_outputs": [{"name": output}]}
    h = np.zeros((1, 2, 4), np.float32)
    raw = log_probs if output == "log_probs" else logits.copy()
    _, step = decoding.session_callables(_Session({}), _Session({output: raw, "h_out": h}), contract)
    got, state = step(np.zeros(2, np.int64), {"h": h}, (np.zeros((2, 1, 1), np.float32),), np.ones(2, np.int64), None)
    assert np.allclose(got, log_probs, atol=1e-6) and state["h"] is h


class _Recording(_Session):
    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.feeds = feeds
        return super().run(names, feeds)


@pytest.mark.parametrize("names", [None, ["memory_k_0", "memory_v_0"]])
def test_session_memory_is_the_contracts_tensors_in_order(names: list[str] | None) -> None:
    """The Transformer's memory is one tensor per layer's keys and values, fed as they came out
    of the encoder; graphs exported before name one tensor, ``memory``, and no list."""
    contract: dict = {"state": [], "decoder_outputs": [{"name": "log_probs"}]}
    if names:
        contract["memory"] = [{"name": n, "source_axis": axis} for n, axis in zip(names, (3, 2))]
    assert decoding.memory_axes(contract) == ((3, 2) if names else (1,))
    expected = names or ["memory"]
    outs = {n: np.full((2, 3, 4), i, np.float32) for i, n in enumerate(expected)}
    decoder = _Recording({"log_probs": np.zeros((2, 5), np.float32)})
    encode, step = decoding.session_callables(_Session(outs), decoder, contract)
    memory, _ = encode(np.zeros((2, 3), np.int64), np.full(2, 3, np.int64))
    assert [m[0, 0, 0] for m in memory] == list(range(len(expected)))
    step(np.zeros(2, np.int64), {}, memory, np.full(2, 3, np.int64), None)
    assert all(decoder.feeds[n] is m for n, m in zip(expected, memory))
