"""Map Brown corpus tags to the 12-tag universal tagset.

The universal tagset is Petrov, Das & McDonald (2012), "A Universal
Part-of-Speech Tagset": NOUN VERB ADJ ADV PRON DET ADP NUM CONJ PRT . X.
This module follows their published Brown correspondence (``en-brown.map``),
including its less obvious choices, so our data matches what other tools call
"Brown with universal tags":

* subordinating conjunctions (``cs``) are ADP, like Penn's ``IN``;
* ``pn`` (nominal pronouns such as *anybody*) is NOUN; ``ex`` (existential
  *there*), ``uh`` (interjections), ``abl``/``abn`` (pre-qualifiers and
  pre-quantifiers such as *quite*, *all*) are PRT; ``ap`` (*many*, *other*)
  and ``od`` (ordinals) are ADJ; the negator ``*`` (*not*, *n't*) is ADV;
* possessives: nouns stay NOUN (``np$``), ``pp$`` (*my*) and ``wp$`` (*whose*)
  are DET, ``pp$$`` (*mine*) is PRON, ``cd$`` is NOUN, and the rare ``ap$``,
  ``jj$``, ``rb$`` are PRT;
* contractions written as one token (``ppss+md`` *I'll*, ``np+bez`` *John's*
  = John is) are PRT unless the first part is a verb (``vb+ppo`` *let's*,
  ``md+ppss``) which gives VERB; pairs of the same class keep it
  (``in+in``, ``nn+nn``); a function word glued after a content word keeps
  the first part's tag (``nn+in``, ``rb+cs``); three-part tokens and
  ``do+ppss`` are X;
* every foreign word (``fw-*``) is X, and so is ``nil`` (untagged).

A Brown tag is a base tag plus modifiers: ``-tl`` (title), ``-hl`` (headline),
``-nc`` (cited word), a leading ``fw-`` (foreign word), a trailing ``*``
(negated, as in ``bez*`` *isn't*) and ``+`` joining the parts of a
contraction. The modifiers do not change the word class, so they are peeled
off before the lookup.
"""

from __future__ import annotations

UNIVERSAL_TAGS: tuple[str, ...] = (
    "NOUN", "VERB", "ADJ", "ADV", "PRON", "DET", "ADP", "NUM", "CONJ", "PRT", ".", "X",
)

# Base Brown tags (lower case, modifiers removed) -> universal tag.
_BASE: dict[str, str] = {
    # punctuation; "--" is the dash, "'" / "''" / "``" are quotes
    ".": ".", ",": ".", ":": ".", "(": ".", ")": ".", "--": ".", "'": ".", "''": ".", "``": ".",
    # determiners and pre-/post-determiners
    "abl": "PRT", "abn": "PRT", "abx": "DET", "ap": "ADJ", "ap$": "PRT", "at": "DET",
    "dt": "DET", "dt$": "DET", "dti": "DET", "dts": "DET", "dtx": "DET",
    "wdt": "DET", "wp$": "DET", "pp$": "DET",
    # forms of be / have / do, modals and full verbs
    "be": "VERB", "bed": "VERB", "bedz": "VERB", "beg": "VERB", "bem": "VERB",
    "ben": "VERB", "ber": "VERB", "bez": "VERB",
    "hv": "VERB", "hvd": "VERB", "hvg": "VERB", "hvn": "VERB", "hvz": "VERB",
    "do": "VERB", "dod": "VERB", "doz": "VERB", "md": "VERB",
    "vb": "VERB", "vbd": "VERB", "vbg": "VERB", "vbn": "VERB", "vbz": "VERB",
    # conjunctions and adpositions
    "cc": "CONJ", "cs": "ADP", "in": "ADP",
    # numbers
    "cd": "NUM", "cd$": "NOUN", "od": "ADJ",
    # nouns, including possessives and the nominal pronoun class
    "nn": "NOUN", "nn$": "NOUN", "nns": "NOUN", "nns$": "NOUN",
    "np": "NOUN", "np$": "NOUN", "nps": "NOUN", "nps$": "NOUN",
    "nr": "NOUN", "nr$": "NOUN", "nrs": "NOUN", "pn": "NOUN", "pn$": "NOUN",
    # personal and wh- pronouns
    "pp$$": "PRON", "ppl": "PRON", "ppls": "PRON", "ppo": "PRON", "pps": "PRON",
    "ppss": "PRON", "wpo": "PRON", "wps": "PRON",
    # adjectives
    "jj": "ADJ", "jjr": "ADJ", "jjs": "ADJ", "jjt": "ADJ", "jj$": "PRT",
    # adverbs and qualifiers; "*" is the negator (not, n't)
    "rb": "ADV", "rbr": "ADV", "rbt": "ADV", "rn": "ADV", "rb$": "PRT",
    "ql": "ADV", "qlp": "ADV", "wql": "ADV", "wrb": "ADV", "*": "ADV",
    # particles and other function words
    "rp": "PRT", "to": "PRT", "ex": "PRT", "uh": "PRT",
    # untagged
    "nil": "X",
}

# Suffix modifiers, peeled from the right in any order (a tag can carry two,
# e.g. "nn-tl-hl"). Two files truncate them ("fw-in+at-t", "ppss+ber-n"), so
# the truncated spellings are accepted too.
_SUFFIXES: tuple[str, ...] = ("-tl", "-hl", "-nc", "-t", "-n")

# Contractions whose published mapping no general rule below produces.
_COMPOUND_EXCEPTIONS: dict[str, str] = {"do+ppss": "X"}

_WH = ("wdt", "wps", "wpo", "wrb", "wql", "wp$")


def strip_modifiers(tag: str) -> tuple[str, bool]:
    """Return ``(core, foreign)``: ``tag`` lower-cased without -tl/-hl/-nc/fw-.

    ``core`` may still contain ``+`` (contraction) and ``*`` (negation).
    """
    core = tag.strip().lower()
    changed = True
    while changed:
        changed = False
        for suffix in _SUFFIXES:
            # Keep at least one character so "--" and "---hl" survive intact.
            if core.endswith(suffix) and len(core) > len(suffix) and core != "--":
                core = core[: -len(suffix)]
                changed = True
    foreign = core.startswith("fw-")
    if foreign:
        core = core[3:]
    return core, foreign


def _simple(part: str) -> str | None:
    """Universal tag of one contraction-free part, or None if unknown."""
    if part in _BASE:
        return _BASE[part]
    # Negated forms (bez* isn't, md* can't) share the class of the bare form.
    if part.endswith("*") and part[:-1] in _BASE:
        return _BASE[part[:-1]]
    return None


def _is_verb(part: str) -> bool:
    return _simple(part) == "VERB"


def brown_to_universal(tag: str) -> str | None:
    """Universal tag for a Brown tag, or None if the tag is not recognised.

    Callers decide what an unknown tag means (``convert`` counts it and uses
    X); the mapping itself never guesses.
    """
    core, foreign = strip_modifiers(tag)
    if foreign:
        return "X"
    if core in _COMPOUND_EXCEPTIONS:
        return _COMPOUND_EXCEPTIONS[core]
    if "+" not in core:
        return _simple(core)
    parts = core.split("+")
    if any(not p for p in parts):
        return None
    if len(parts) > 2:
        # Only "wdt+ber+pp" and "wdt+do+pps" occur; the published map calls
        # them X (the first even has a truncated part).
        return "X"
    tags = [_simple(p) for p in parts]
    if tags[0] is None or tags[1] is None:
        return None
    first, second = parts
    if _is_verb(first):
        return "VERB"  # let's (vb+ppo), gonna (vbg+to), hafta (hv+to)
    if first.startswith(_WH):
        return "PRT"  # what's, who'll, where'd
    if tags[0] == tags[1]:
        return tags[0]
    if _is_verb(second):
        return "PRT"  # I'll, he's, John's (= John is), there's, wanna (to+vb)
    return tags[0]  # kinda (nn+in), more'n (rbr+cs)


def convert(tag: str, unknown: dict[str, int] | None = None) -> str:
    """Like :func:`brown_to_universal` but unknown tags become X.

    If ``unknown`` is given, each fallback is counted there by its raw tag, so
    the caller can report them.
    """
    mapped = brown_to_universal(tag)
    if mapped is None:
        if unknown is not None:
            unknown[tag] = unknown.get(tag, 0) + 1
        return "X"
    return mapped
