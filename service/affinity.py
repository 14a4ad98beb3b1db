"""CPU pinning (``SEQSERVE_DECODE_CPUS``): translation decoding on CPUs of its own.

Why: under overload the server's event loop spends most of a core refusing calls
(each refusal is a whole gRPC exchange). Sharing CPUs with it, a decode process
was preempted at every burst and admitted translations slowed down with the load;
on CPUs of their own they decode as fast as on an idle server (docs/performance.md,
overload). Linux only: the affinity calls are Linux's.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Set

log = logging.getLogger(__name__)


def front_end_cpus(decode_cpus: Set[int]) -> set[int]:
    """The CPUs the rest of the server keeps when ``decode_cpus`` go to decoding.

    Raises ValueError for CPUs this process may not use, since pinning to them would fail
    in every decode process, later and less clearly, and where there is no pinning."""
    if not hasattr(os, "sched_getaffinity"):
        raise ValueError("SEQSERVE_DECODE_CPUS needs Linux's CPU affinity; leave it empty on this system")
    allowed = os.sched_getaffinity(0)
    if not set(decode_cpus) <= allowed:
        raise ValueError(
            f"SEQSERVE_DECODE_CPUS {sorted(decode_cpus)}: CPUs {sorted(set(decode_cpus) - allowed)} are not "
            f"among those this process may use ({sorted(allowed)})"
        )
    rest = allowed - set(decode_cpus)
    if not rest:
        log.warning("SEQSERVE_DECODE_CPUS takes every CPU (%s): the server shares them with decoding",
                    sorted(allowed))
        return allowed
    return rest


def pin_process(cpus: Set[int]) -> None:
    """Pin every thread of this process to ``cpus``; threads started later inherit it.

    Every thread, because Linux's affinity is per thread and the caller may already
    have started some (a metrics server, grpc's pollers)."""
    for thread in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(thread), cpus)
        except ProcessLookupError:  # it ended meanwhile
            pass
