"""The dynamic batcher on its own: batching, order, errors, limits, cancellation."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from service.batcher import Batcher
from service.errors import ResourceExhausted, Unavailable


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.errors: list[BaseException] = []
        self.gate = threading.Event()
        self.gate.set()

    def run(self, items: list[int]) -> list[int]:
        self.gate.wait(5)
        self.batches.append(list(items))
        return [x * 10 for x in items]

    def on_batch(self, size, waits, seconds) -> None:
        assert size == len(waits) and seconds >= 0

    def on_error(self, size, error) -> None:
        self.errors.append(error)


def make(rec: Recorder, **kw) -> Batcher[int, int]:
    opts = dict(max_batch_size=8, max_wait_s=0.05, max_queue=100, observer=rec)
    opts.update(kw)
    return Batcher(rec.run, executor=ThreadPoolExecutor(2), **opts)


async def test_concurrent_items_share_a_run_and_keep_their_results():
    rec = Recorder()
    b = make(rec)
    results = await asyncio.gather(*(b.submit(i) for i in range(5)))
    assert results == [0, 10, 20, 30, 40]
    assert rec.batches == [[0, 1, 2, 3, 4]]
    await b.close()


async def test_batches_never_exceed_the_maximum_size():
    rec = Recorder()
    b = make(rec, max_batch_size=3)
    results = await asyncio.gather(*(b.submit(i) for i in range(10)))
    assert results == [i * 10 for i in range(10)]
    assert max(len(x) for x in rec.batches) <= 3
    assert sorted(x for batch in rec.batches for x in batch) == list(range(10))
    await b.close()


async def test_a_lone_item_waits_no_longer_than_max_wait():
    rec = Recorder()
    b = make(rec, max_wait_s=0.01)
    assert await asyncio.wait_for(b.submit(7), timeout=2) == 70
    await b.close()


async def test_zero_wait_still_takes_what_is_already_queued():
    rec = Recorder()
    b = make(rec, max_wait_s=0.0)
    results = await asyncio.gather(*(b.submit(i) for i in range(4)))
    assert results == [0, 10, 20, 30]
    await b.close()


async def test_zero_wait_takes_items_that_arrive_in_the_same_turn_of_the_event_loop():
    # A request handler unpacks its message before it submits; the worker waits one
    # turn of the loop so requests that came in together still share a run.
    rec = Recorder()
    b = make(rec, max_wait_s=0.0)

    async def later(i: int) -> int:
        await asyncio.sleep(0)
        return await b.submit(i)

    assert await asyncio.gather(b.submit(1), later(2)) == [10, 20]
    assert rec.batches == [[1, 2]]
    await b.close()


async def test_inline_single_runs_a_lone_item_on_the_event_loop_thread_and_batches_elsewhere():
    threads: list[int] = []

    def run(items: list[int]) -> list[int]:
        threads.append(threading.get_ident())
        return items

    loop_thread = threading.get_ident()
    b = Batcher(run, max_batch_size=8, max_wait_s=0, max_queue=10, executor=ThreadPoolExecutor(1),
                inline_single=True)
    assert await b.submit(1) == 1
    assert await asyncio.gather(*(b.submit(i) for i in range(3))) == [0, 1, 2]
    assert threads[0] == loop_thread and threads[1] != loop_thread
    await b.close()
    off = Batcher(run, max_batch_size=8, max_wait_s=0, max_queue=10, executor=ThreadPoolExecutor(1))
    assert await off.submit(5) == 5
    assert threads[2] != loop_thread
    await off.close()


async def test_requests_handed_over_a_turn_apart_still_share_runs():
    # A gRPC server's event loop hands calls over one per turn, and each handler takes
    # a turn to unpack its message: the first must not run alone before the next submits.
    runs: list[list[int]] = []
    b = Batcher(lambda items: runs.append(items) or items, max_batch_size=32, max_wait_s=0, max_queue=64,
                executor=ThreadPoolExecutor(1), inline_single=True)

    async def handler(i: int) -> int:
        await asyncio.sleep(0)
        return await b.submit(i)

    tasks = []
    for i in range(16):
        tasks.append(asyncio.create_task(handler(i)))
        await asyncio.sleep(0)
    assert sorted(await asyncio.gather(*tasks)) == list(range(16))
    assert len(runs) < 16, runs
    await b.close()


async def test_an_error_reaches_every_waiter_of_the_batch_and_the_batcher_goes_on():
    rec = Recorder()
    broken = {"on": True}

    def flaky(items: list[int]) -> list[int]:
        if broken["on"]:
            raise ValueError("boom")
        return [x + 1 for x in items]

    b = Batcher(flaky, max_batch_size=8, max_wait_s=0.05, max_queue=100, observer=rec)
    results = await asyncio.gather(*(b.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, ValueError) and str(r) == "boom" for r in results)
    assert len(rec.errors) == 3  # one per failed item
    broken["on"] = False
    assert await b.submit(1) == 2
    await b.close()


async def test_an_item_the_model_cannot_take_fails_alone_not_its_batch_mates():
    rec = Recorder()

    def picky(items: list[int]) -> list[int]:
        if 13 in items:
            raise ValueError("cannot take 13")
        return [x * 2 for x in items]

    b = Batcher(picky, max_batch_size=8, max_wait_s=0.05, max_queue=100, observer=rec)
    results = await asyncio.gather(*(b.submit(i) for i in (1, 13, 3)), return_exceptions=True)
    assert results[0] == 2 and results[2] == 6
    assert isinstance(results[1], ValueError)
    assert len(rec.errors) == 1
    await b.close()


async def test_a_wrong_number_of_results_is_an_error_for_everyone():
    b = Batcher(lambda items: items[:-1], max_batch_size=8, max_wait_s=0.05, max_queue=100)
    results = await asyncio.gather(*(b.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    await b.close()


async def test_a_full_queue_refuses_at_once_with_resource_exhausted():
    rec = Recorder()
    rec.gate.clear()  # the first batch blocks in the model
    b = make(rec, max_batch_size=1, max_wait_s=0, max_queue=2)
    first = asyncio.ensure_future(b.submit(0))
    await asyncio.sleep(0.05)  # taken by the worker, stuck in run
    queued = [asyncio.ensure_future(b.submit(i)) for i in (1, 2)]
    await asyncio.sleep(0.01)
    with pytest.raises(ResourceExhausted, match="queued"):
        await b.submit(3)
    rec.gate.set()
    assert await first == 0
    assert [await q for q in queued] == [10, 20]
    await b.close()


async def test_cancelled_items_never_reach_the_model():
    rec = Recorder()
    rec.gate.clear()
    b = make(rec, max_batch_size=1, max_wait_s=0)
    first = asyncio.ensure_future(b.submit(0))
    await asyncio.sleep(0.05)
    doomed = asyncio.ensure_future(b.submit(99))
    await asyncio.sleep(0.01)
    doomed.cancel()
    rec.gate.set()
    assert await first == 0
    assert await b.submit(5) == 50
    assert [99] not in rec.batches
    await b.close()


async def test_close_fails_what_is_still_queued_and_refuses_new_items():
    rec = Recorder()
    rec.gate.clear()
    b = make(rec, max_batch_size=1, max_wait_s=0)
    running = asyncio.ensure_future(b.submit(0))
    await asyncio.sleep(0.05)
    queued = asyncio.ensure_future(b.submit(1))
    await asyncio.sleep(0.01)
    await b.close()
    rec.gate.set()
    with pytest.raises(Unavailable):
        await queued
    with pytest.raises(Unavailable):
        await b.submit(2)
    running.cancel()


async def test_several_workers_run_batches_in_parallel():
    started = threading.Barrier(2, timeout=5)

    def run(items: list[int]) -> list[int]:
        started.wait()  # both workers must be inside run at once, or this times out
        return items

    b = Batcher(run, max_batch_size=1, max_wait_s=0, max_queue=10, workers=2, executor=ThreadPoolExecutor(2))
    assert await asyncio.gather(b.submit(1), b.submit(2)) == [1, 2]
    await b.close()


def _spin(seconds: float) -> None:
    """Keep the event loop's thread busy, as unpacking a request does."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def _make_busy(b: Batcher[int, int]) -> None:
    await asyncio.gather(*(b.submit(i) for i in range(32)))  # each found others unanswered
    assert b.busy


async def _arrive_one_per_busy_turn(b: Batcher[int, int], n: int) -> list[int]:
    async def request(i: int) -> int:
        for _ in range(i):
            await asyncio.sleep(0)
        _spin(0.0003)
        return await b.submit(i)

    return await asyncio.gather(*(request(i) for i in range(n)))


async def test_a_busy_model_holds_its_batch_while_the_loop_is_taking_requests_in():
    rec = Recorder()
    b = make(rec, max_wait_s=0.0, hold_s=30.0)
    await _make_busy(b)
    rec.batches.clear()
    assert await _arrive_one_per_busy_turn(b, 8) == [i * 10 for i in range(8)]
    assert rec.batches == [list(range(8))]
    await b.close()
    # Without the hold the same arrivals go in several runs.
    rec = Recorder()
    b = make(rec, max_wait_s=0.0)
    await _make_busy(b)
    rec.batches.clear()
    await _arrive_one_per_busy_turn(b, 8)
    assert len(rec.batches) > 1
    await b.close()


async def test_the_hold_ends_as_soon_as_the_loop_has_nothing_else_to_do():
    rec = Recorder()
    b = make(rec, max_wait_s=0.0, hold_s=30.0)
    await _make_busy(b)
    assert await asyncio.wait_for(b.submit(3), timeout=5) == 30
    await b.close()


async def test_one_request_at_a_time_never_makes_the_model_busy():
    rec = Recorder()
    b = make(rec, max_wait_s=0.0, hold_s=30.0)
    for i in range(40):
        assert await b.submit(i) == i * 10
        assert await b.submit_many([1, 2, 3, 4]) == [10, 20, 30, 40]  # one request of four items
    assert not b.busy
    await b.close()
