"""Per-token features for words the vocabulary never saw (tagging), shared by training and the server.

A tagger looks a token up in its vocabulary by the *lowercased* token; a word
it never saw becomes ``<unk>`` and would carry no information at all. Beside
the id every token therefore gets ``N_FEATURES`` small integers computed from
the raw token (original case), which generalize to unseen words:

====  =========================================================================
 0    hashed suffix of 1 character (lowercased)
 1    hashed suffix of 2 characters (lowercased)
 2    hashed suffix of 3 characters (lowercased)
 3    word shape: lower / Capitalized / single capital / ALL CAPS / mIxEd /
      digits / digits+letters / apostrophe (lower or capital first) /
      punctuation / other (``SHAPES``)
====  =========================================================================

Suffixes carry most of English morphology (-ly ADV, -ed/-ing VERB, -tion
NOUN, -ous ADJ); the shape carries what lowercasing threw away (a capital in
mid-sentence is usually a proper NOUN) and separates numbers and punctuation.
A word shorter than n characters gets its whole self, marked with ``^``, as
its n-suffix, so "a" and the ending "-a" of "data" are different features.

Every value lies in ``[1, buckets)``; 0 is reserved for padding. Suffixes are
hashed with CRC-32 (stable across processes, machines and Python versions,
unlike the salted built-in ``hash``) into ``buckets - 1`` values. The manifest
records ``FEATURES_NAME`` and ``buckets``; any change to what this module
computes needs a new name, or served models would silently read other
features than they were trained on.

Pure Python on purpose: the server imports it without numpy or torch.
"""

from __future__ import annotations

import zlib

FEATURES_NAME = "suffix-shape-v1"
SUFFIX_LENGTHS = (1, 2, 3)
N_FEATURES = len(SUFFIX_LENGTHS) + 1  # the suffixes, then the shape
PAD_FEATURE = 0

# Shape ids (1-based; 0 is padding). seqserve.text.tokenize never leaves a
# hyphen or a period inside a token, so there are no hyphenated or dotted shapes.
SHAPES: dict[str, int] = {
    "lower": 1,  # the
    "capitalized": 2,  # The, McDonald is "mixed"
    "single-capital": 3,  # I, A, U (of U.S.)
    "all-caps": 4,  # NATO, FBI
    "mixed": 5,  # McDonald, iPhone
    "digits": 6,  # 1960, ½ (any Unicode digits)
    "digits-letters": 7,  # 1960s, 3rd, B52
    "apostrophe-lower": 8,  # don't, o'clock
    "apostrophe-capital": 9,  # It's, C'mon, O'Brien
    "punctuation": 10,  # . , ` - $ (one non-word character)
    "other": 11,  # anything else (e.g. with an underscore), and the empty string
}
N_SHAPES = len(SHAPES)


def _bucket(key: str, buckets: int) -> int:
    return 1 + zlib.crc32(key.encode("utf-8")) % (buckets - 1)


def word_shape(word: str) -> int:
    """The shape id of one token (see ``SHAPES``)."""
    if not word:
        return SHAPES["other"]
    if len(word) == 1 and not word.isalnum() and word != "_":
        return SHAPES["punctuation"]
    letters = [c for c in word if c.isalpha()]
    has_digit = any(c.isnumeric() for c in word)  # isnumeric: also ½, Ⅻ
    if "'" in word or "’" in word:
        if letters:
            return SHAPES["apostrophe-capital"] if letters[0].isupper() else SHAPES["apostrophe-lower"]
        return SHAPES["other"]
    if not word.isalnum():  # word characters that are neither letters nor digits ("_")
        return SHAPES["other"]
    if has_digit:
        return SHAPES["digits-letters"] if letters else SHAPES["digits"]
    # only letters from here; letters without case (CJK, ...) count as lower
    if not any(c.isupper() for c in letters):
        return SHAPES["lower"]
    if len(letters) == 1:
        return SHAPES["single-capital"]
    if word.isupper():
        return SHAPES["all-caps"]
    if letters[0].isupper() and not any(c.isupper() for c in letters[1:]):
        return SHAPES["capitalized"]
    return SHAPES["mixed"]


def token_features(word: str, buckets: int) -> list[int]:
    """``N_FEATURES`` ints in ``[1, buckets)`` for one raw (case-preserving) token."""
    if buckets <= N_SHAPES:
        raise ValueError(f"buckets must be > {N_SHAPES} (the shape ids), got {buckets}")
    low = word.lower()
    out = []
    for n in SUFFIX_LENGTHS:
        suffix = low[-n:] if len(low) >= n else "^" + low
        # The length in the key keeps suffix-1 "s" and whole-word "^s" apart and
        # spreads the three features' collisions differently.
        out.append(_bucket(f"{n}|{suffix}", buckets))
    out.append(word_shape(word))
    return out
