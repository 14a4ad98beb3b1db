"""Continuous batching for autoregressive decoding: one running batch per model, in its own thread.

Requests arrive tokenized, each with its search rule (greedy or beam) and wait
in a bounded queue. Between any two decoder steps the thread admits waiting
requests while the running batch has rows to spare, encodes them together in
one encoder run, and then steps every sequence in the batch at once
(``seqserve.decoding.RunningBatch``): a sentence leaves the moment it is done,
and the next one takes over its rows (in place, without copying the batch's
state) at the following step, instead of a batch waiting for its longest
member. For comparison, ``mode="request"`` admits only into an empty batch
(request-level batching), and ``mode="static"`` also keeps finished sentences'
rows stepping until the batch's longest member ends.

A cancelled or expired request leaves before the next step, its rows spare like
a finished one's (``SPARE_ROWS``); a failing step or encoder run fails exactly
the requests that were in it, and the thread goes on. Each request's events (its
output tokens as they become certain, then the result or an error) reach its
coroutine on the event loop through an asyncio queue.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from seqserve.decoding import EncodeFn, RunningBatch, Search, StepFn, Translation
from service.admission import Admission
from service.errors import InferenceError, ResourceExhausted, SeqserveError, Status, Unavailable
from service.mailbox import mailbox
from service.settings import DecodeBatching

log = logging.getLogger(__name__)

# Share of the running batch that finished translations' rows may stay in, stepped
# unread, for arriving ones to take over without copying the state: under load they
# are taken within a step or two. Full Transformer, 32 in flight, greedy: 86-92 ->
# 112-132 sentences/s in three alternated runs (docs/performance.md, translation).
SPARE_ROWS = 0.25


class DeadlinePassed(SeqserveError):
    status = Status.DEADLINE_EXCEEDED


class DecodeObserver(Protocol):
    """Where the scheduler reports what it spends (the model-level metrics)."""

    def on_encode(self, size: int, queue_waits: list[float], seconds: float) -> None: ...

    def on_step(self, rows: int, seconds: float) -> None: ...

    def on_error(self, size: int, error: BaseException) -> None: ...

    def on_first_token(self, seconds: float) -> None: ...

    def on_end(self, job: "DecodeJob", reason: str) -> None: ...

    def on_running(self, sequences: int) -> None: ...


@dataclass
class _Event:
    tokens: list[int] | None = None  # newly certain output tokens
    result: Translation | None = None
    error: BaseException | None = None


class DecodeJob:
    """One request in the scheduler: read ``events()``; ``cancel()`` stops it at the next step.
    Without ``progress`` only the end is posted: a unary call has no use for each step's
    tokens, and each post costs the event loop a delivery. Events go to ``sink``, by
    default this job's queue on the running event loop through the loop's mailbox (a
    decode process gives its own, which sends them to the server)."""

    def __init__(self, src: list[int], search: Search, deadline: float | None, progress: bool = True, *,
                 sink: Callable[[_Event], None] | None = None, submitted: float | None = None):
        self.src, self.search, self.deadline, self.progress = src, search, deadline, progress
        self.submitted = time.perf_counter() if submitted is None else submitted
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self.output_tokens = 0
        self.cancelled = False  # set on the event loop, read by the decode thread
        self.on_cancel: Callable[[], None] | None = None
        self._sent = 0  # certain tokens already delivered
        self._queue: asyncio.Queue[_Event] = asyncio.Queue()
        if sink is None:
            sink = functools.partial(mailbox(asyncio.get_running_loop()).post, self._queue)
        self._sink = sink

    def cancel(self) -> None:
        if not self.cancelled and self.on_cancel is not None:
            self.on_cancel()
        self.cancelled = True

    async def events(self) -> AsyncIterator[list[int] | Translation]:
        """New certain tokens (lists), then the ``Translation``; raises the request's error.
        Tokens of several steps that arrived while the reader was busy (writing the last
        ones to a slow transport) come as one list: one message where there were many."""
        while True:
            event = await self._queue.get()
            tokens: list[int] = []
            while event.tokens is not None and not self._queue.empty():
                tokens += event.tokens
                event = self._queue.get_nowait()
            if event.tokens is not None:
                yield tokens + event.tokens
                continue
            if tokens:
                yield tokens
            if event.error is not None:
                raise event.error
            if event.result is not None:
                yield event.result
                return

    def _post(self, event: _Event) -> None:
        try:
            self._sink(event)
        except RuntimeError:  # the event loop is gone (shutdown): nobody is waiting
            pass

    def _deliver_progress(self) -> None:
        certain = self.search.committed()
        if len(certain) > self._sent:
            if self.first_token_at is None:
                self.first_token_at = time.perf_counter()
            if self.progress:
                self._post(_Event(tokens=certain[self._sent :]))
            self._sent = len(certain)


class DecodeScheduler:
    """The decode loop of one model version. ``submit`` from the event loop; the rest runs in a thread."""

    def __init__(
        self,
        encode: EncodeFn,
        step: StepFn,
        *,
        bos_id: int,
        pad_id: int,
        batch_axes: dict[str, int],
        grow_axes: dict[str, int],
        memory_axes: Sequence[int] | None = None,
        max_rows: int,
        max_queue: int,
        max_encode_batch: int,
        mode: DecodeBatching = "continuous",
        observer: DecodeObserver | None = None,
        name: str = "decoder",
        admission: Admission | None = None,
    ) -> None:
        self._encode, self._raw_step, self._step = encode, step, self._timed_step(step)
        self._bos, self._pad = bos_id, pad_id
        self._batch_axes, self._grow_axes, self._memory_axes = batch_axes, grow_axes, memory_axes
        self._max_rows, self._max_queue, self._max_encode = max_rows, max_queue, max_encode_batch
        self._mode, self._observer, self._name = mode, observer, name
        self._admission = admission
        self._pending: collections.deque[DecodeJob] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._batch = self._new_batch()
        self._jobs: dict[int, DecodeJob] = {}  # running, by id()
        self._thread = threading.Thread(target=self._run, name=f"decode {name}", daemon=True)
        self._thread.start()

    # -- the event loop side

    def submit(
        self, src: list[int], search: Search, deadline: float | None = None, progress: bool = True
    ) -> DecodeJob:
        job = DecodeJob(src, search, deadline, progress)
        self.enqueue(job)
        return job

    def enqueue(self, job: DecodeJob) -> None:
        """Queue a job made by the caller; raises if the queue is full, over budget or closing."""
        with self._cond:
            if self._closed:
                raise Unavailable(f"{self._name} is shutting down")
            if len(self._pending) >= self._max_queue:
                raise ResourceExhausted(
                    f"{self._name}: {len(self._pending)} translations already waiting (the limit); retry later"
                )
            if self._admission and (refusal := self._admission.refusal(len(self._pending) + len(self._jobs))):
                raise ResourceExhausted(f"{self._name}: {refusal}")
            self._pending.append(job)
            self._cond.notify()

    def warm_up(self, jobs: list[tuple[list[int], Search]]) -> tuple[int, float]:
        """Decode ``jobs`` together once before serving, on the caller's thread and outside
        the metrics; returns (requests finished, seconds) for admission's first estimate."""
        batch = RunningBatch(self._raw_step, bos_id=self._bos, batch_axes=self._batch_axes, grow_axes=self._grow_axes,
                             memory_axes=self._memory_axes)
        src, lengths = self._padded([ids for ids, _ in jobs])
        start, finished = time.perf_counter(), 0
        memory, state = self._encode(src, lengths)  # memory arrays (n, ...), initial state rows
        batch.add(list(range(len(jobs))), [search for _, search in jobs], memory, lengths, state)
        while batch:
            finished += len(batch.step())
        return finished, time.perf_counter() - start

    @property
    def requests(self) -> int:
        """Requests waiting or decoding."""
        return len(self._pending) + len(self._jobs)

    def close(self) -> None:
        """Stop the thread; every waiting and running request fails with UNAVAILABLE."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    # -- the decode thread

    def _new_batch(self) -> RunningBatch:
        return RunningBatch(
            self._step, bos_id=self._bos, batch_axes=self._batch_axes, grow_axes=self._grow_axes,
            memory_axes=self._memory_axes,
            static=self._mode == "static", spare=SPARE_ROWS if self._mode == "continuous" else 0.0,
        )

    def _timed_step(self, step: StepFn) -> StepFn:
        def timed(prev, state, memory, src_lengths, position):  # numpy in, numpy out
            start = time.perf_counter()
            out = step(prev, state, memory, src_lengths, position)
            if self._observer:
                self._observer.on_step(int(prev.size), time.perf_counter() - start)
            return out

        return timed

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._pending and not self._batch:
                    self._cond.wait()
                if self._closed:
                    break
                group = self._admit()
            started, finished = time.perf_counter(), 0
            try:
                self._drop_gone()
                if group:
                    self._start(group)
                if self._batch:
                    finished = self._advance()
            except Exception:  # a bug here must not silently stop every future request
                log.exception("%s: decode loop error", self._name)
                self._fail_running(InferenceError(f"{self._name}: internal decoding error"))
            if self._admission:
                self._admission.record(finished, time.perf_counter() - started)
            if self._observer:
                self._observer.on_running(len(self._jobs))
        shutting = Unavailable(f"{self._name} is shutting down")
        with self._cond:
            pending, self._pending = list(self._pending), collections.deque()
        for job in pending:
            self._end(job, "shutdown", error=shutting)
        self._fail_running(shutting, reason="shutdown")

    def _reserved(self) -> int:
        return sum(job.search.max_rows for job in self._jobs.values())

    def _admit(self) -> list[DecodeJob]:
        """Waiting requests that fit now (caller holds the lock)."""
        if self._mode != "continuous" and self._batch:
            return []
        room = self._max_rows - self._reserved()
        group: list[DecodeJob] = []
        while self._pending and len(group) < self._max_encode:
            job = self._pending[0]
            if job.search.max_rows > room and (group or self._jobs):
                break
            self._pending.popleft()
            room -= job.search.max_rows
            group.append(job)
        return group

    def _padded(self, sources: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        src = np.full((len(sources), max(map(len, sources))), self._pad, dtype=np.int64)  # (n, S)
        for i, ids in enumerate(sources):
            src[i, : len(ids)] = ids
        return src, np.array([len(ids) for ids in sources], dtype=np.int64)  # (n, S), (n,)

    def _gone(self, job: DecodeJob, now: float) -> str:
        if job.cancelled:
            return "cancelled"
        if job.deadline is not None and now >= job.deadline:
            return "deadline"
        return ""

    def _drop_gone(self) -> None:
        now = time.monotonic()
        gone = {key: why for key, job in self._jobs.items() if (why := self._gone(job, now))}
        if gone:
            self._batch.remove(set(gone))
            for key, why in gone.items():
                self._end(self._jobs.pop(key), why)

    def _start(self, group: list[DecodeJob]) -> None:
        now = time.monotonic()
        live = []
        for job in group:
            why = self._gone(job, now)
            if why:
                self._end(job, why)
            else:
                live.append(job)
        if not live:
            return
        src, lengths = self._padded([job.src for job in live])
        start = time.perf_counter()
        try:
            memory, state = self._encode(src, lengths)  # memory arrays (n, ...), initial state rows
        except Exception as exc:
            if self._observer:
                self._observer.on_error(len(live), exc)
            for job in live:
                self._end(job, "error", error=InferenceError(f"{self._name}: encoder failed: {exc}"))
            return
        if self._observer:
            self._observer.on_encode(len(live), [start - j.submitted for j in live], time.perf_counter() - start)
        keys = [id(job) for job in live]
        self._batch.add(keys, [j.search for j in live], memory, lengths, state)
        self._jobs.update(zip(keys, live))

    def _advance(self) -> int:
        """One step for the running batch; returns how many requests it finished."""
        try:
            finished = self._batch.step()
        except Exception as exc:
            if self._observer:
                self._observer.on_error(self._batch.rows, exc)
            self._fail_running(InferenceError(f"{self._name}: decoder step failed: {exc}"))
            return 0
        for member in finished:
            job = self._jobs.pop(member.key)
            job._deliver_progress()
            result = job.search.result()
            job.output_tokens = len(result.tokens)
            self._end(job, "completed", result=result)
        for job in self._jobs.values():
            job._deliver_progress()
        return len(finished)

    def _fail_running(self, error: BaseException, reason: str = "error") -> None:
        jobs, self._jobs, self._batch = list(self._jobs.values()), {}, self._new_batch()
        for job in jobs:
            self._end(job, reason, error=error)

    def _end(
        self, job: DecodeJob, reason: str, *, result: Translation | None = None, error: BaseException | None = None
    ) -> None:
        job.finished_at = time.perf_counter()
        if self._observer:  # before the client hears, so the metrics already say it
            if job.first_token_at is not None:
                self._observer.on_first_token(job.first_token_at - job.submitted)
            self._observer.on_end(job, reason)
        if error is None and result is None:
            error = DeadlinePassed(f"{self._name}: the deadline passed") if reason == "deadline" else None
        if error is not None or result is not None:
            job._post(_Event(result=result, error=error))

