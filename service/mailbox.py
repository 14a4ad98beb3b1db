"""Items from worker threads to asyncio queues, waking the event loop once per burst.

A decode step finishes tokens for every sentence in its batch at once. Posting each
with ``loop.call_soon_threadsafe`` writes to the loop's wake-up pipe once per
sentence per step; a mailbox writes once, when its first item of a burst arrives,
and the loop hands out everything that came in by the time it runs.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Any

_mailboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopMailbox] = weakref.WeakKeyDictionary()
_mailboxes_lock = threading.Lock()


class LoopMailbox:
    """Puts items into asyncio queues of one loop from any thread, in the order posted."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._items: list[tuple[asyncio.Queue[Any], Any]] = []

    def post(self, queue: asyncio.Queue[Any], item: Any) -> None:
        """Raises RuntimeError if the loop is closed (nobody is left to read)."""
        with self._lock:
            self._items.append((queue, item))
            if len(self._items) > 1:  # a delivery is already scheduled and will take this one
                return
        try:
            self._loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:
            with self._lock:
                self._items.clear()  # else no later post would schedule a delivery
            raise

    def _deliver(self) -> None:
        with self._lock:
            items, self._items = self._items, []
        for queue, item in items:
            queue.put_nowait(item)


def mailbox(loop: asyncio.AbstractEventLoop) -> LoopMailbox:
    """The loop's one mailbox: sharing it is what lets posts for different queues share a wake-up."""
    with _mailboxes_lock:
        box = _mailboxes.get(loop)
        if box is None:
            box = _mailboxes[loop] = LoopMailbox(loop)
        return box
