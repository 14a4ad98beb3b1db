"""The loop mailbox: items from threads reach their queues in order, a burst wakes the loop once."""

from __future__ import annotations

import asyncio
import threading

import pytest

from service.mailbox import LoopMailbox, mailbox


def _counting_wake_ups(loop: asyncio.AbstractEventLoop) -> list[int]:
    calls = [0]
    real = loop.call_soon_threadsafe

    def counted(*args, **kw):
        calls[0] += 1
        return real(*args, **kw)

    loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
    return calls


async def test_items_from_a_thread_reach_their_queues_in_order() -> None:
    box = mailbox(asyncio.get_running_loop())
    queues: list[asyncio.Queue[int]] = [asyncio.Queue() for _ in range(4)]

    def post() -> None:
        for i in range(400):
            box.post(queues[i % 4], i)

    thread = threading.Thread(target=post)
    thread.start()
    got = [[await q.get() for _ in range(100)] for q in queues]
    thread.join()
    assert got == [list(range(k, 400, 4)) for k in range(4)]


async def test_a_burst_posted_before_the_loop_runs_wakes_it_once() -> None:
    loop = asyncio.get_running_loop()
    wake_ups = _counting_wake_ups(loop)
    box = LoopMailbox(loop)
    queues: list[asyncio.Queue[int]] = [asyncio.Queue() for _ in range(32)]
    thread = threading.Thread(target=lambda: [box.post(q, 7) for q in queues])
    thread.start()
    thread.join()  # the loop has not run meanwhile: every post joined the first one's delivery
    await asyncio.sleep(0)
    assert wake_ups[0] == 1
    assert [q.qsize() for q in queues] == [1] * 32


def test_a_closed_loop_refuses_and_a_later_post_still_reports_it() -> None:
    loop = asyncio.new_event_loop()
    box = LoopMailbox(loop)
    loop.close()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for _ in range(2):  # the second must not be swallowed as "a delivery is already scheduled"
        with pytest.raises(RuntimeError):
            box.post(queue, 1)


def test_each_loop_has_its_own_mailbox() -> None:
    a, b = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        assert mailbox(a) is mailbox(a)
        assert mailbox(a) is not mailbox(b)
    finally:
        a.close()
        b.close()
