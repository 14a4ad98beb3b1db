"""Keeping the garbage collector's full passes short while serving.

A full collection walks every tracked object; in a server with its models loaded that
is tens of thousands of long-lived objects (modules, sessions, protobuf classes), and
the walk holds the event loop (measured: 33-40 ms for a server with all three tasks'
quick models, every request and stream waiting meanwhile). Objects that will live as
long as the process are frozen once they are loaded, so later full passes only walk
what serving created.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect what loading left behind, then freeze what survived. Frozen objects are
    never collected, so this first unfreezes what the last call froze: after a reload,
    a retired model's reference cycles become collectable again."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
