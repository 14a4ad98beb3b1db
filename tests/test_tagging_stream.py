"""Stream mechanics of tagging, on stand-in models: word assembly, state, lookahead windows."""

from __future__ import annotations

import random

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from service.errors import InvalidArgument, ResourceExhausted
from service.metrics import Metrics
from service.settings import Settings
from service.tasks.tagging import Encoded, TagStream, TextSplitter


class _Entry:
    arch = "fake"


class CausalStandIn:
    """Tags each word with its stream position, which only carried state can know."""

    mode, lookahead, entry = "causal", 0, _Entry()

    def encode(self, words):
        return Encoded(words, [0] * len(words), [[0]] * len(words))

    def initial_state(self):
        return {"h": np.zeros(1)}

    async def step(self, chunk, state):
        n = int(state["h"][0])
        tags = [(f"{w}@{n + i}", 1.0) for i, w in enumerate(chunk.words)]
        return tags, {"h": np.array([n + len(chunk.words)])}


class LookaheadStandIn:
    """Tags each word with the words after it in the window it was seen in."""

    mode, entry = "lookahead", _Entry()

    def __init__(self, k):
        self.lookahead = k
        self.windows = []

    def encode(self, words):
        return Encoded(list(words), [0] * len(words), [[0]] * len(words))

    async def tag(self, sentences, admit=True):
        (s,) = sentences
        self.windows.append(len(s.words))
        return [[(f"{w}+{len(s.words) - i - 1}-{i}", 1.0) for i, w in enumerate(s.words)]]


def after(t) -> int:
    """Words after this one in the window that tagged it (LookaheadStandIn's tag)."""
    return int(t.tag.split("+")[1].split("-")[0])


def before(t) -> int:
    return int(t.tag.split("-")[1])


def settings(**kw):
    return Settings(**{"max_stream_tokens": 1000, "lookahead_window": 8, **kw})


def stream(model, **kw):
    return TagStream(model, settings(**kw), Metrics(CollectorRegistry()))


def test_text_cut_anywhere_makes_the_same_words():
    text = "The jury said it's \"hard\" -- and left.  Then 3,000 more came\tin."
    for seed in range(30):
        rng = random.Random(seed)
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, 15)))
        splitter, words = TextSplitter(100), []
        for a, b in zip([0, *cuts], [*cuts, len(text)]):
            words += splitter.feed(text[a:b])
        words += splitter.flush()
        assert words == TextSplitter(100).feed(text + " ")


def test_a_word_is_held_until_white_space_follows_it():
    s = TextSplitter(100)
    assert s.feed("The ju") == ["The"]
    assert s.feed("ry") == []
    assert s.feed(" said") == ["jury"]
    assert s.flush() == ["said"]


def test_an_endless_word_is_refused():
    s = TextSplitter(10)
    with pytest.raises(InvalidArgument):
        s.feed("x" * 11)


async def test_causal_streams_tag_each_token_at_once_with_carried_state():
    st = stream(CausalStandIn())
    first = await st.push(["a", "b"], 0.0)
    assert [(t.index, t.tag) for t in first] == [(0, "a@0"), (1, "b@1")]
    second = await st.push_text("c d", 0.0)
    assert [(t.index, t.tag) for t in second] == [(2, "c@2")]
    assert [(t.index, t.tag) for t in await st.flush(0.0)] == [(3, "d@3")]


async def test_tokens_after_text_end_the_word_the_text_left_open():
    st = stream(CausalStandIn())
    assert await st.push_text("The ju", 0.0) != []
    assert await st.push_text("ry said", 0.0) != []
    out = await st.push_tokens(["it"], 0.0)
    assert [(t.index, t.token) for t in out] == [(2, "said"), (3, "it")]


async def test_lookahead_waits_for_k_future_tokens_then_flush_releases_the_rest():
    st = stream(LookaheadStandIn(2))
    assert await st.push(["a", "b"], 0.0) == []
    out = await st.push(["c"], 0.0)
    assert [(t.index, t.token, t.tag) for t in out] == [(0, "a", "a+2-0")]
    out = await st.push(["d", "e"], 0.0)
    assert [t.token for t in out] == ["b", "c"]
    assert all(after(t) >= 2 for t in out)
    out = await st.flush(0.0)
    assert [(t.index, t.token) for t in out] == [(3, "d"), (4, "e")]


@pytest.mark.parametrize("k", [0, 1, 3])
async def test_lookahead_windows_stay_bounded_and_every_token_is_tagged_once_in_order(k):
    model = LookaheadStandIn(k)
    st = stream(model)
    rng = random.Random(k)
    words = [f"w{i}" for i in range(100)]
    out, i = [], 0
    while i < len(words):
        n = rng.randint(1, 12)
        out += await st.push(words[i : i + n], 0.0)
        i += n
    out += await st.flush(0.0)
    assert [t.index for t in out] == list(range(100))
    assert [t.token for t in out] == words
    assert max(model.windows) <= 8
    # every token saw at least k tokens of future, except the last k at the flush
    assert all(after(t) >= k for t in out[: len(out) - k])
    # and, past the stream's start, at least half a window of the past
    assert all(before(t) >= 4 for t in out[4:])


async def test_a_stream_past_its_token_limit_is_refused():
    st = stream(CausalStandIn(), max_stream_tokens=3)
    await st.push(["a", "b"], 0.0)
    with pytest.raises(ResourceExhausted):
        await st.push(["c", "d"], 0.0)


async def test_empty_tokens_are_invalid():
    with pytest.raises(InvalidArgument):
        await stream(CausalStandIn()).push(["a", ""], 0.0)
