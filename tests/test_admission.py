"""Admission by latency budget, on its own and in front of the batcher and the decode scheduler."""

from __future__ import annotations

import asyncio
import random
import threading

import pytest

from seqserve.decoding import GreedySearch
from service.admission import Admission
from service.decode_scheduler import DecodeScheduler
from service.errors import ResourceExhausted
from tests.test_batcher import Recorder, make
from tests.toy_decoders import BOS, EOS, MEMORY_AXES, CacheLM


def test_capacity_is_requests_per_busy_second_times_parallel_runs():
    a = Admission(budget_s=0.1, floor=2, parallel=2)
    assert a.capacity() == 0
    a.record(4, 0.01)
    a.record(6, 0.01)  # 10 requests in 20 ms of work, two runs at once: 1000/s
    assert a.capacity() == pytest.approx(1000)
    assert a.refusal(99) == ""  # 99 ahead: 99 ms of work, inside 100 ms
    refusal = a.refusal(100)
    assert "100 requests ahead" in refusal and "100 ms budget" in refusal
    assert a.refusal(1) == ""  # 1 ahead: 1 ms of work


def test_capacity_counts_only_the_recent_history_however_many_runs_went_before():
    rng = random.Random(5)
    a = Admission(budget_s=0.1, floor=2, history=16)
    runs = [(rng.randint(0, 8), rng.uniform(1e-4, 1e-2)) for _ in range(1000)]
    for i, run in enumerate(runs, 1):
        a.record(*run)
        recent = runs[max(0, i - 16):i]
        expected = sum(n for n, _ in recent) / sum(s for _, s in recent)
        assert a.capacity() == pytest.approx(expected, rel=1e-9)


def test_below_the_floor_only_a_thin_history_admits_whatever_the_estimate():
    a = Admission(budget_s=0.1, floor=8)
    a.record(1, 1.0)  # one request finished in a second: 1/s, probably a first batch still running
    assert a.refusal(7) == ""  # too little history to trust: up to the floor goes in
    assert "overloaded" in a.refusal(8)
    for _ in range(8):
        a.record(1, 1.0)  # nine finished now, and still 1/s: believed
    assert a.refusal(0) == ""  # an idle model always admits
    assert "overloaded" in a.refusal(1)  # 1 ahead is a second of work, over the 100 ms budget


def test_with_no_request_finished_yet_the_floor_is_also_the_ceiling():
    a = Admission(budget_s=0.1, floor=4)
    a.record(0, 0.5)  # decoder steps that finished nothing: no estimate
    assert a.refusal(3) == ""
    assert "none finished lately" in a.refusal(4)  # a cold burst does not all go in at once


def test_the_floor_counts_requests_finished_since_load_not_in_the_recent_history():
    a = Admission(budget_s=0.01, floor=4, history=8)
    for _ in range(4):
        a.record(1, 0.01)  # 100/s
    for _ in range(8):
        a.record(0, 0.001)  # decoder steps: the history now holds no finished request
    assert a.capacity() == 0 and a.refusal(3) == "" and "none finished lately" in a.refusal(4)
    a.record(1, 0.001)  # 1 request in 9 ms of history: 111/s, so 1 ahead fits 10 ms
    assert a.refusal(1) == ""
    assert "overloaded" in a.refusal(2)  # past the floor: the budget alone decides


def test_a_zero_budget_admits_everything():
    a = Admission(budget_s=0, floor=1)
    a.record(1, 10.0)
    assert a.refusal(10**6) == ""


async def test_the_batcher_refuses_past_the_budget_and_not_a_streams_work():
    rec = Recorder()
    admission = Admission(budget_s=0.05, floor=2)
    batcher = make(rec, max_wait_s=0, admission=admission)
    admission.record(10, 0.1)  # 100/s: 5 requests fill the budget
    rec.gate.clear()  # hold the model so requests pile up
    held = [asyncio.create_task(batcher.submit(i)) for i in range(5)]
    await asyncio.sleep(0.05)
    with pytest.raises(ResourceExhausted, match="overloaded"):
        await batcher.submit(99)
    with pytest.raises(ResourceExhausted, match="overloaded"):
        await batcher.submit_many([1, 2])
    stream_work = asyncio.create_task(batcher.submit(7, admit=False))
    rec.gate.set()
    assert await asyncio.gather(*held) == [0, 10, 20, 30, 40]
    assert await stream_work == 70
    assert await batcher.submit(5) == 50  # drained: admitted again
    await batcher.close()


async def test_the_decode_scheduler_refuses_past_the_budget():
    lm = CacheLM(1)
    lm.table[:, EOS] = -1e9  # every decode runs to its limit
    gate = threading.Event()

    def step(*args):
        gate.wait(5)
        return lm.step(*args)

    admission = Admission(budget_s=0.05, floor=1)
    admission.record(10, 0.1)  # 100/s: 5 requests fill the budget
    sched = DecodeScheduler(lm.encode, step, bos_id=BOS, pad_id=0, batch_axes={"k": 1}, grow_axes={"k": 2},
                            memory_axes=MEMORY_AXES, max_rows=64, max_queue=100, max_encode_batch=8, admission=admission)
    try:
        jobs = [sched.submit([5, 6], GreedySearch(EOS, 3)) for _ in range(5)]
        with pytest.raises(ResourceExhausted, match="overloaded"):
            sched.submit([5], GreedySearch(EOS, 3))
    finally:
        gate.set()
        for job in jobs:
            job.cancel()
        sched.close()


async def test_a_warm_up_run_is_admissions_first_estimate_and_stays_out_of_the_metrics():
    rec, observed = Recorder(), []
    rec.on_batch = lambda size, waits, seconds: observed.append(size)  # type: ignore[method-assign]
    admission = Admission(budget_s=0.05, floor=4)
    batcher = make(rec, admission=admission)
    batcher.warm_up([1, 2, 3, 4])  # at load, on the loading thread
    assert rec.batches == [[1, 2, 3, 4]] and admission.capacity() > 0
    assert observed == []  # the observer (the model's metrics) saw no batch
    await batcher.close()


def test_a_decoder_warm_up_finishes_its_translations_outside_the_metrics():
    from tests.test_decode_scheduler import Recorder as DecodeRecorder, scheduler

    lm, rec = CacheLM(2), DecodeRecorder()
    sched = scheduler(lm, rec)
    try:
        finished, seconds = sched.warm_up([([5, 6], GreedySearch(EOS, 5)), ([7], GreedySearch(EOS, 4))])
        assert finished == 2 and seconds > 0
        assert rec.steps == [] and rec.encodes == [] and sum(rec.ends.values()) == 0
    finally:
        sched.close()
