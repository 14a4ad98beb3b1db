"""Deterministic train/dev/test splits.

Items are split by *group* (a document, a Bible chapter, or the item itself)
so related items never straddle two splits, optionally within *strata*
(e.g. per label) so each split keeps the label balance.

The order is a keyed hash, not ``random.shuffle``: a group's place depends
only on the seed and its own key, so the split does not change with the input
order, the Python version or the platform, and adding one group does not
reshuffle all the others.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Callable, Hashable, Sequence, TypeVar

T = TypeVar("T")

SPLITS: tuple[str, ...] = ("train", "dev", "test")
DEFAULT_RATIOS: tuple[float, float, float] = (0.8, 0.1, 0.1)
DEFAULT_SEED = 13


def _rank(seed: int, key: str) -> bytes:
    return hashlib.sha256(f"{seed}\x1f{key}".encode("utf-8")).digest()


def split(
    items: Sequence[T],
    seed: int = DEFAULT_SEED,
    group: Callable[[T], str] | None = None,
    stratum: Callable[[T], Hashable] | None = None,
    ratios: tuple[float, float, float] = DEFAULT_RATIOS,
) -> dict[str, list[T]]:
    """Split ``items`` into ``{"train", "dev", "test"}`` lists.

    ``group(item)`` gives the key of the unit that is kept together; the
    default makes every item its own group, keyed by its position. Groups are
    ordered by ``sha256(seed, key)`` within each stratum and cut where the
    running item count crosses the ratios, so splits are proportional in
    items, not in groups. A group belongs to the stratum of its first item.
    Each split lists its groups in seeded order, each group's items in input
    order.
    """
    if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-9:
        raise ValueError(f"ratios must be three non-negative numbers summing to 1, got {ratios}")
    keys = [group(item) if group else str(i) for i, item in enumerate(items)]
    members: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        members[key].append(i)
    strata: dict[Hashable, list[str]] = defaultdict(list)
    for key, idx in members.items():
        strata[stratum(items[idx[0]]) if stratum else None].append(key)

    assignment: dict[str, str] = {}
    bounds = (ratios[0], ratios[0] + ratios[1])
    for group_keys in strata.values():
        group_keys.sort(key=lambda k: _rank(seed, k))
        total = sum(len(members[k]) for k in group_keys)
        seen = 0
        for key in group_keys:
            size = len(members[key])
            # Place a group by the position of its middle item, so a big
            # group lands where most of it would fall.
            mid = (seen + size / 2) / total
            assignment[key] = "train" if mid < bounds[0] else "dev" if mid < bounds[1] else "test"
            seen += size

    # Write groups in the seeded order too (members keep their input order):
    # source files are often sorted (by movie, by label, by book) and a
    # trainer that reads a split front to back should not see that order.
    out: dict[str, list[T]] = {name: [] for name in SPLITS}
    for key in sorted(members, key=lambda k: _rank(seed, k)):
        out[assignment[key]].extend(items[i] for i in members[key])
    return out
