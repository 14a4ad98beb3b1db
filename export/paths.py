"""Default locations outside git for corpora, checkpoints and the model repository."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Root of seqserve's caches: $SEQSERVE_CACHE_DIR, else ~/.cache/seqserve."""
    return Path(os.environ.get("SEQSERVE_CACHE_DIR", Path.home() / ".cache" / "seqserve"))


def data_dir() -> Path:
    """Normalized corpora: $SEQSERVE_DATA_DIR, else <cache>/data."""
    return Path(os.environ.get("SEQSERVE_DATA_DIR", cache_dir() / "data"))


def runs_dir() -> Path:
    """Training checkpoints and logs: $SEQSERVE_RUNS_DIR, else <cache>/runs."""
    return Path(os.environ.get("SEQSERVE_RUNS_DIR", cache_dir() / "runs"))
