"""The decode scheduler: continuous batching, cancellation, deadlines, failures, shutdown."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import numpy as np
import pytest

from seqserve import decoding
from seqserve.decoding import BeamSearch, GreedySearch, RunningBatch, Translation
from service.decode_scheduler import DeadlinePassed, DecodeJob, DecodeScheduler, _Event
from service.errors import InferenceError, ResourceExhausted, Unavailable
from tests.toy_decoders import BOS, EOS, MEMORY_AXES, V, CacheLM


class Recorder:
    def __init__(self) -> None:
        self.steps: list[int] = []
        self.encodes: list[int] = []
        self.ends: Counter[str] = Counter()
        self.errors = 0
        self.running: list[int] = []
        self.first_tokens: list[float] = []

    def on_encode(self, size: int, queue_waits: list[float], seconds: float) -> None:
        self.encodes.append(size)

    def on_step(self, rows: int, seconds: float) -> None:
        self.steps.append(rows)

    def on_error(self, size: int, error: BaseException) -> None:
        self.errors += 1

    def on_first_token(self, seconds: float) -> None:
        self.first_tokens.append(seconds)

    def on_end(self, job: DecodeJob, reason: str) -> None:
        self.ends[reason] += 1

    def on_running(self, sequences: int) -> None:
        self.running.append(sequences)


def scheduler(lm: CacheLM, recorder: Recorder, step=None, **kw) -> DecodeScheduler:
    options = dict(max_rows=64, max_queue=100, max_encode_batch=8, mode="continuous") | kw
    return DecodeScheduler(
        lm.encode, step or lm.step, bos_id=BOS, pad_id=0, batch_axes={"k": 1}, grow_axes={"k": 2},
        memory_axes=MEMORY_AXES, observer=recorder, name="toy", **options,
    )


def search(kind: str, limit: int) -> decoding.Search:
    return GreedySearch(EOS, limit) if kind == "greedy" else BeamSearch(EOS, limit, beam_size=3, n_best=2)


def alone(lm: CacheLM, ids: list[int], kind: str, limit: int) -> list[list[int]]:
    s = search(kind, limit)
    batch = RunningBatch(lm.step, bos_id=BOS, grow_axes={"k": 2}, memory_axes=MEMORY_AXES)
    memory, state = lm.encode(np.array([ids], np.int64), np.array([len(ids)], np.int64))
    batch.add([0], [s], memory, np.array([len(ids)], np.int64), state)
    while batch:
        batch.step()
    return [h.tokens for h in s.result().hypotheses]


async def collect(job: DecodeJob) -> tuple[list[int], Translation]:
    streamed: list[int] = []
    async for event in job.events():
        if isinstance(event, Translation):
            return streamed, event
        streamed += event
    raise AssertionError("no result")


def requests(n: int, seed: int = 0) -> list[tuple[list[int], str, int]]:
    rng = np.random.default_rng(seed)
    return [
        ([int(x) for x in rng.integers(4, V, size=int(rng.integers(1, 7)))], ["greedy", "beam"][i % 2],
         int(rng.integers(2, 14)))
        for i in range(n)
    ]


@pytest.mark.parametrize("mode", ["continuous", "request", "static"])
async def test_concurrent_requests_each_get_their_own_answer(mode: str) -> None:
    lm, rec = CacheLM(5), Recorder()
    sched = scheduler(lm, rec, mode=mode)
    try:
        reqs = requests(24)
        jobs = []
        for i, (ids, kind, limit) in enumerate(reqs):
            jobs.append(sched.submit(ids, search(kind, limit)))
            if i % 5 == 4:
                await asyncio.sleep(0.002)  # arrivals spread over the running batch's life
        results = await asyncio.gather(*(collect(j) for j in jobs))
    finally:
        sched.close()
    for (ids, kind, limit), (streamed, result) in zip(reqs, results):
        assert [h.tokens for h in result.hypotheses] == alone(lm, ids, kind, limit)
        assert streamed == decoding.strip_eos(result.tokens, EOS)  # the stream is the answer
    assert rec.ends == Counter(completed=24)
    assert max(rec.steps) > 1  # sequences shared steps
    assert rec.running[-1] == 0


async def test_without_progress_only_the_answer_is_posted_and_time_to_first_token_still_counts() -> None:
    lm, rec = CacheLM(3), Recorder()
    sched = scheduler(lm, rec)
    try:
        ids, kind, limit = [5, 6, 7], "greedy", 12
        streamed, result = await collect(sched.submit(ids, search(kind, limit), progress=False))
    finally:
        sched.close()
    assert streamed == [] and [h.tokens for h in result.hypotheses] == alone(lm, ids, kind, limit)
    assert decoding.strip_eos(result.tokens, EOS) and len(rec.first_tokens) == 1


def gated(lm: CacheLM) -> tuple[threading.Event, callable]:
    """A step that waits for the test between calls, so a request can be caught mid-decode."""
    gate = threading.Event()

    def step(*args):
        gate.wait(5)
        gate.clear()
        return lm.step(*args)

    return gate, step


async def test_a_reader_that_keeps_up_gets_each_steps_tokens_as_they_are_decoded() -> None:
    lm, rec = CacheLM(4), Recorder()
    lm.table[:, EOS] = -1e9  # decodes run to their limit
    gate, step = gated(lm)
    sched = scheduler(lm, rec, step=step)
    try:
        events = sched.submit([5, 6], search("greedy", 5)).events()
        for n in range(1, 6):
            gate.set()  # one more step, then the test reads before allowing the next
            assert len(await anext(events)) == 1, f"step {n}"
        gate.set()
        assert isinstance(await anext(events), Translation)
    finally:
        gate.set()
        sched.close()


async def test_tokens_of_steps_the_reader_fell_behind_on_come_as_one_list() -> None:
    job = DecodeJob([5], search=None, deadline=None, sink=lambda e: None)  # type: ignore[arg-type]
    for event in (_Event(tokens=[1]), _Event(tokens=[2, 3]), _Event(tokens=[4])):
        job._queue.put_nowait(event)
    events = job.events()
    assert await anext(events) == [1, 2, 3, 4]
    job._queue.put_nowait(_Event(tokens=[5]))
    job._queue.put_nowait(_Event(result="done"))  # type: ignore[arg-type]
    assert [e async for e in events] == [[5], "done"]  # tokens before the end are not lost


async def test_an_error_after_queued_tokens_comes_after_them() -> None:
    job = DecodeJob([5], search=None, deadline=None, sink=lambda e: None)  # type: ignore[arg-type]
    job._queue.put_nowait(_Event(tokens=[1]))
    job._queue.put_nowait(_Event(error=ValueError("boom")))
    events = job.events()
    assert await anext(events) == [1]
    with pytest.raises(ValueError, match="boom"):
        await anext(events)


async def test_a_cancelled_request_leaves_the_batch_and_the_others_finish() -> None:
    lm, rec = CacheLM(2), Recorder()
    lm.table[:, EOS] = -1e9  # decodes run to their limit
    gate, step = gated(lm)
    sched = scheduler(lm, rec, step=step)
    try:
        doomed = sched.submit([5, 6], search("beam", 1000))
        other = sched.submit([7], search("greedy", 6))
        while len(rec.steps) < 3:  # a few steps with both in the batch, however slow the machine
            gate.set()
            await asyncio.sleep(0.02)
        rows_before = rec.steps[-1]
        doomed.cancel()
        while True:
            gate.set()
            await asyncio.sleep(0.01)
            if rec.ends["completed"]:
                break
        _, result = await collect(other)
        assert len(result.tokens) == 6
        assert rec.ends["cancelled"] == 1
        assert rec.steps[-1] < rows_before  # the cancelled beams left
        assert rec.running[-1] == 0
    finally:
        gate.set()
        sched.close()


async def test_an_expired_request_is_dropped_with_deadline_exceeded() -> None:
    lm, rec = CacheLM(2), Recorder()
    lm.table[:, EOS] = -1e9

    def slow(*args):
        time.sleep(0.01)
        return lm.step(*args)

    sched = scheduler(lm, rec, step=slow)
    try:
        job = sched.submit([5], search("greedy", 10_000), deadline=time.monotonic() + 0.1)
        with pytest.raises(DeadlinePassed):
            await collect(job)
        assert rec.ends["deadline"] == 1
        late = sched.submit([5], search("greedy", 3), deadline=time.monotonic() - 1)
        with pytest.raises(DeadlinePassed):
            await collect(late)
    finally:
        sched.close()


async def test_a_full_queue_refuses_at_once() -> None:
    lm, rec = CacheLM(2), Recorder()
    gate, step = gated(lm)
    sched = scheduler(lm, rec, step=step, max_rows=3, max_queue=2)
    try:
        sched.submit([5], search("beam", 50))  # takes every row
        await asyncio.sleep(0.02)
        sched.submit([5], search("beam", 50))
        sched.submit([6], search("beam", 50))
        with pytest.raises(ResourceExhausted, match="waiting"):
            sched.submit([7], search("greedy", 5))
    finally:
        gate.set()
        sched.close()


async def test_a_failing_step_fails_its_requests_and_the_next_ones_work() -> None:
    lm, rec = CacheLM(4), Recorder()
    broken = {"on": True}

    def step(*args):
        if broken["on"]:
            raise RuntimeError("ORT said no")
        return lm.step(*args)

    sched = scheduler(lm, rec, step=step)
    try:
        jobs = [sched.submit([5, 6], search("greedy", 5)), sched.submit([7], search("beam", 5))]
        for job in jobs:
            with pytest.raises(InferenceError, match="ORT said no"):
                await collect(job)
        broken["on"] = False
        _, result = await collect(sched.submit([7], search("beam", 5)))
        assert [h.tokens for h in result.hypotheses] == alone(lm, [7], "beam", 5)
        assert rec.errors == 1 and rec.ends["error"] == 2
    finally:
        sched.close()


async def test_close_fails_waiting_and_running_requests() -> None:
    lm, rec = CacheLM(2), Recorder()
    gate, step = gated(lm)
    sched = scheduler(lm, rec, step=step, max_rows=3)
    running = sched.submit([5], search("beam", 50))
    await asyncio.sleep(0.02)
    waiting = sched.submit([6], search("beam", 50))
    closer = asyncio.get_running_loop().run_in_executor(None, sched.close)
    gate.set()
    await closer
    for job in (running, waiting):
        with pytest.raises(Unavailable):
            await collect(job)
    with pytest.raises(Unavailable):
        sched.submit([5], search("greedy", 3))
