"""Dynamic batching: concurrent requests for one model share one ORT run.

Each submitted item gets a future. Worker tasks take the first waiting item,
then keep collecting until the batch is full or ``max_wait_s`` has passed since
that first item, run the whole batch in a thread (ORT releases the GIL), and
resolve every future: with its own result, or with the error of its own run, so
no waiter hangs (a failed batch is rerun item by item, so an input the model
cannot take fails alone). Items whose caller has gone (cancelled future) are
dropped before they reach the model. With ``inline_single``, a lone item that
finds the model idle runs on the event loop's own thread, in its caller's task: two
thread hand-offs and the worker's round trip less for a request at low load, at the
price of holding the loop for that one run.

With ``hold_s``, a batch of a busy model also waits while the event loop has other
work, for at most ``hold_s``. A gRPC server's one event loop takes requests in one by
one, so under load a batch would otherwise go with one item while the next requests
are still being unpacked; a run of 8 costs about what 3 single runs do. A model is
busy when most of its recent requests arrived while others were unanswered: a client
that sends one request at a time never makes it so, and never waits. The hold ends
once the loop has had nothing else to do for ``_IDLE_S``: then no request is on its
way, and holding would only add latency.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from service.admission import Admission
from service.errors import ResourceExhausted, Unavailable

# A turn of the event loop this short ran nothing but the batcher.
_IDLE_TURN_S = 15e-6
# Idle this long, the loop has no request on its way (measured at 64 in flight: 90% of
# its idle stretches between requests are under 80 us).
_IDLE_S = 100e-6
# Weight of the newest arrival in the busy average: about the last 16 count.
_BUSY_WEIGHT = 1 / 16

I = TypeVar("I")
O = TypeVar("O")


class BatchObserver(Protocol):
    def on_batch(self, size: int, queue_waits: Sequence[float], run_seconds: float) -> None: ...

    def on_error(self, size: int, error: BaseException) -> None: ...


@dataclass
class _Pending(Generic[I, O]):
    item: I
    future: asyncio.Future[O]
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher(Generic[I, O]):
    """Batches items for ``run``, which maps a list of items to a list of results."""

    def __init__(
        self,
        run: Callable[[list[I]], list[O]],
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_queue: int,
        executor: Executor | None = None,
        workers: int = 1,
        observer: BatchObserver | None = None,
        name: str = "batcher",
        admission: Admission | None = None,
        inline_single: bool = False,
        hold_s: float = 0.0,
    ) -> None:
        if max_batch_size < 1 or workers < 1 or max_queue < 1:
            raise ValueError("max_batch_size, workers and max_queue must be at least 1")
        self._run = run
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_wait_s
        self._max_queue = max_queue
        self._executor = executor
        self._n_workers = workers
        self._observer = observer
        self._name = name
        self._queue: asyncio.Queue[_Pending[I, O]] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._closed = False
        self._in_flight = 0
        self._admission = admission
        self._inline_single = inline_single
        self._running = 0
        self._hold_s = hold_s
        self._overlap = 0.0  # moving share of arrivals that found others unanswered
        # One worker collects at a time, so a held batch is not starved by the others.
        self._collecting = asyncio.Lock()

    def start(self) -> None:
        """Start the worker tasks; needs a running event loop."""
        if not self._workers:
            self._workers = [
                asyncio.create_task(self._work(), name=f"{self._name}-{i}") for i in range(self._n_workers)
            ]

    def warm_up(self, items: list[I]) -> None:
        """Run ``items`` once before serving, on the caller's thread (a model's load): the
        first ORT runs allocate, and admission starts from this run's time, not a guess."""
        start = time.perf_counter()
        self._run(items)
        if self._admission:
            self._admission.record(len(items), time.perf_counter() - start)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    @property
    def in_flight(self) -> int:
        """Items submitted and not yet answered (queued or running)."""
        return self._in_flight

    @property
    def busy(self) -> bool:
        """Whether most recent requests arrived while others were unanswered."""
        return self._overlap > 0.5

    async def submit(self, item: I, admit: bool = True, arrival: bool = True) -> O:
        """Queue ``item`` and wait for its result (or the error of its batch). ``admit=False``
        skips the latency budget (work of a stream that was admitted when it opened);
        ``arrival=False`` keeps it out of ``busy`` (the second and later items of one request)."""
        if self._closed:
            raise Unavailable(f"{self._name} is shutting down")
        if self._queue.qsize() >= self._max_queue:
            raise ResourceExhausted(
                f"{self._name}: {self._max_queue} requests already queued; retry later"
            )
        if admit and self._admission and (refusal := self._admission.refusal(self._in_flight)):
            raise ResourceExhausted(f"{self._name}: {refusal}")
        self.start()
        if arrival:
            self._overlap += _BUSY_WEIGHT * ((self._in_flight > 0) - self._overlap)
        pending = _Pending(item, asyncio.get_running_loop().create_future())
        self._in_flight += 1
        try:
            if not await self._ran_alone(pending):
                self._queue.put_nowait(pending)
            return await pending.future
        finally:
            self._in_flight -= 1

    async def _ran_alone(self, pending: _Pending[I, O]) -> bool:
        """Run ``pending`` on this thread if it is the only item and stays so for the two
        turns of the loop it would spend reaching the worker and in the worker's wait for
        same-instant arrivals: a lone request skips the turn that wakes it again after."""
        if not (self._inline_single and self._in_flight == 1 and not self.busy and not self._max_wait_s):
            return False
        # The next requests of a burst are still in their handlers' first steps: with
        # one turn here 16 at once ran one by one, each found the model idle.
        for _ in range(2):
            await asyncio.sleep(0)
        if self._in_flight > 1 or self._running or not self._queue.empty():
            return False
        await self._run_batch([pending])
        return True

    async def submit_many(self, items: Sequence[I], admit: bool = True) -> list[O]:
        """Queue several items at once (they may land in different batches)."""
        if self._queue.qsize() + len(items) > self._max_queue:
            raise ResourceExhausted(
                f"{self._name}: queue full ({self._max_queue} requests); retry later"
            )
        held = self._in_flight + len(items) - 1
        if admit and self._admission and (refusal := self._admission.refusal(held)):
            raise ResourceExhausted(f"{self._name}: {refusal}")
        if len(items) == 1:  # the common case; gather() would wrap it in a task of its own
            return [await self.submit(items[0], admit=False)]
        return list(await asyncio.gather(
            *(self.submit(item, admit=False, arrival=i == 0) for i, item in enumerate(items))
        ))

    async def close(self) -> None:
        """Stop the workers; items still queued fail with UNAVAILABLE."""
        self._closed = True
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        while not self._queue.empty():
            pending = self._queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(Unavailable(f"{self._name} closed"))

    async def _work(self) -> None:
        while True:
            async with self._collecting:
                batch = await self._collect()
            if batch:
                await self._run_batch(batch)

    async def _collect(self) -> list[_Pending[I, O]]:
        batch = [await self._queue.get()]
        # One turn of the event loop first: requests that arrived in the same instant
        # are still being unpacked by their handlers, and without this turn the
        # worker would run them one by one (batches of 1-3 at concurrency 64).
        await asyncio.sleep(0)
        while len(batch) < self._max_batch_size and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        if len(batch) < self._max_batch_size and self._max_wait_s > 0:
            # One timer for the whole wait: wait_for() per item would cost a task each.
            try:
                async with asyncio.timeout(self._max_wait_s):
                    while len(batch) < self._max_batch_size:
                        batch.append(await self._queue.get())
            except TimeoutError:
                pass
        if len(batch) < self._max_batch_size and self._hold_s > 0 and self.busy:
            await self._hold_while_loop_busy(batch)
        # A cancelled caller (client gone, deadline passed) costs no model time.
        return [p for p in batch if not p.future.done()]

    async def _hold_while_loop_busy(self, batch: list[_Pending[I, O]]) -> None:
        """Add items to ``batch`` turn by turn until the loop idles, the hold ends or it is full.
        Turn by turn, not a timed wait: asyncio's shortest timed wait is a millisecond."""
        now = time.perf_counter()
        deadline, idle_since = now + self._hold_s, now
        while len(batch) < self._max_batch_size and now < deadline:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                idle_since = time.perf_counter()
                continue
            turn = now
            await asyncio.sleep(0)
            now = time.perf_counter()
            if now - turn >= _IDLE_TURN_S:
                idle_since = now
            elif now - idle_since >= _IDLE_S:
                return

    async def _run_batch(self, batch: list[_Pending[I, O]]) -> None:
        started = time.perf_counter()
        waits = [started - p.enqueued for p in batch]
        loop = asyncio.get_running_loop()
        items = [p.item for p in batch]
        try:
            if self._inline_single and len(batch) == 1 and not self._running and self._queue.empty():
                results = self._run(items)
            else:
                self._running += 1
                try:
                    results = await loop.run_in_executor(self._executor, self._run, items)
                finally:
                    self._running -= 1
            if len(results) != len(batch):
                raise RuntimeError(f"{self._name}: {len(results)} results for a batch of {len(batch)}")
        except Exception as exc:  # every waiter must hear about it, whatever it is
            if len(batch) > 1:
                # One input the model cannot take must not fail its batch-mates:
                # run each alone, so only the ones that fail themselves get the error.
                for p in batch:
                    if not p.future.done():
                        await self._run_batch([p])
                return
            if self._observer:
                self._observer.on_error(1, exc)
            if not batch[0].future.done():
                batch[0].future.set_exception(exc)
            return
        run_seconds = time.perf_counter() - started
        if self._admission:
            self._admission.record(len(batch), run_seconds)
        if self._observer:
            self._observer.on_batch(len(batch), waits, run_seconds)
        for p, result in zip(batch, results):
            if not p.future.done():
                p.future.set_result(result)
