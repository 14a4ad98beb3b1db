"""Token features for unseen words (seqserve.features): range, stability, shapes; torch- and numpy-free."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqserve.features import FEATURES_NAME, N_FEATURES, N_SHAPES, SHAPES, token_features, word_shape
from seqserve.text import tokenize
from tests.servers import ROOT

BUCKETS = 4096


@settings(max_examples=300, deadline=None)
@given(word=st.text(max_size=12), buckets=st.integers(N_SHAPES + 1, 1 << 20))
def test_every_value_is_in_range_and_never_padding(word: str, buckets: int) -> None:
    feats = token_features(word, buckets)
    assert len(feats) == N_FEATURES
    assert all(isinstance(v, int) and 1 <= v < buckets for v in feats)


def test_pinned_values() -> None:
    # A served model was trained on exactly these numbers: changing them needs a new FEATURES_NAME.
    assert FEATURES_NAME == "suffix-shape-v1"
    assert token_features("The", BUCKETS) == [429, 578, 1096, 2]
    assert token_features("1960s", BUCKETS) == [2110, 1311, 987, 7]
    assert token_features("It's", BUCKETS) == [2110, 358, 4089, 9]


def test_suffixes_ignore_case_and_shape_keeps_it() -> None:
    lower, upper = token_features("running", BUCKETS), token_features("RUNNING", BUCKETS)
    assert lower[:3] == upper[:3]
    assert lower[3] == SHAPES["lower"] and upper[3] == SHAPES["all-caps"]
    # unseen words with a known ending share its suffix buckets
    assert token_features("flurbing", BUCKETS)[:3] == token_features("singing", BUCKETS)[:3]
    # a word shorter than the suffix is marked as whole: "a" is not the ending "-a" of "data"
    assert token_features("a", BUCKETS)[1] != token_features("data", BUCKETS)[1]


@pytest.mark.parametrize(
    "word,shape",
    [
        ("the", "lower"),
        ("The", "capitalized"),
        ("I", "single-capital"),
        ("NATO", "all-caps"),
        ("McDonald", "mixed"),
        ("1960", "digits"),
        ("½", "digits"),
        ("1960s", "digits-letters"),
        ("don't", "apostrophe-lower"),
        ("It's", "apostrophe-capital"),
        (".", "punctuation"),
        ("$", "punctuation"),
        ("_", "other"),
        ("a_b", "other"),
        ("", "other"),
        ("naïve", "lower"),
        ("Émile", "capitalized"),
    ],
)
def test_shapes(word: str, shape: str) -> None:
    assert word_shape(word) == SHAPES[shape]


def test_every_token_the_tokenizer_makes_has_a_shape() -> None:
    text = "Mr. O'Brien's 1960s B52 -- naïve, ½ cup; e.g. U.S. NATO's iPhone_2!"
    for token in tokenize(text, lowercase=False):
        assert 1 <= word_shape(token) <= N_SHAPES


def test_too_few_buckets_is_an_error() -> None:
    with pytest.raises(ValueError):
        token_features("word", N_SHAPES)


def test_stable_across_processes_and_needs_neither_numpy_nor_torch() -> None:
    # Salted str hashes differ per process; the features must not.
    code = (
        "import sys; sys.modules['numpy'] = None; sys.modules['torch'] = None\n"
        "from seqserve.features import token_features\n"
        "print(token_features('Flurbing', 4096))"
    )
    outs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        )
        outs.add(run.stdout.strip())
    assert outs == {str(token_features("Flurbing", 4096))}
