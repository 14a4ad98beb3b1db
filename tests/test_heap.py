"""Freezing the loaded heap: full collections skip it, and what a reload drops is still collected."""

from __future__ import annotations

import gc
import weakref

from service import heap


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector can free it


def test_settle_freezes_what_is_alive_and_a_later_settle_frees_what_was_dropped() -> None:
    try:
        node = _Node()
        ref = weakref.ref(node)
        heap.settle()
        assert gc.get_freeze_count() > 0
        del node
        gc.collect()
        assert ref() is not None, "a frozen cycle is out of the collector's reach"
        heap.settle()  # as after a reload retires a model
        assert ref() is None
    finally:
        gc.unfreeze()
