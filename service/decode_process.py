"""A translation model's decode scheduler in a process of its own.

Why: between two ORT runs a decoder step does Python work (beam bookkeeping,
gathering rows) that needs the GIL, and so does the event loop answering calls.
In one process the two queue for the GIL at every step; under overload, when the
loop spends its time refusing calls, an admitted translation took 10-20x as long
as on an idle server (docs/performance.md). In its own process the scheduler has an
interpreter to itself. The server keeps what belongs to a request (admission, its
coroutine, metrics); the two talk over one pipe.

Messages, server to worker: ``("submit", id, src, search, deadline, progress, submitted)``,
``("cancel", id)``, ``("close",)``. Worker to server: lists of ``("event", id, _Event)``,
``("observe", method, args)`` and ``("record", finished, seconds)``, one list per
decode-loop turn so that the server wakes once per step, not once per message.
The clocks (``time.monotonic`` deadlines, ``perf_counter`` stamps) are the system's
monotonic clock, the same in both processes.

If the worker dies, every request it held fails with UNAVAILABLE and a new worker
starts; requests that arrive meanwhile get UNAVAILABLE too.
"""

from __future__ import annotations

import functools
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqserve import decoding
from seqserve.decoding import Search
from service import heap
from service.admission import Admission
from service.affinity import pin_process
from service.decode_scheduler import DecodeJob, DecodeObserver, DecodeScheduler, _Event
from service.errors import ResourceExhausted, Unavailable
from service.runtime import Runtime
from service.settings import DecodeBatching, Settings

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0
METRICS_DELAY_S = 0.05
CLOSE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to build the model's scheduler: plain, picklable values."""

    encoder: Path
    decoder: Path
    contract: dict[str, Any]
    settings: Settings
    bos_id: int
    pad_id: int
    max_rows: int
    max_queue: int
    max_encode_batch: int
    mode: DecodeBatching
    name: str
    warm_up: list[tuple[list[int], Search]]  # decoded once before the worker says it is ready


@dataclass(frozen=True)
class _Ended:
    """What the metrics read of a finished job (``DecodeMetrics.on_end``)."""

    output_tokens: int
    first_token_at: float | None
    finished_at: float | None


# -- the worker process


@dataclass
class _Outbox:
    """Messages to the server, sent as one list. The decode loop flushes at the end of each
    turn, but only when a request's event or end is waiting or ``METRICS_DELAY_S`` has
    passed: a greedy step takes a fraction of a millisecond, and sending its metrics
    every step cost more than the step."""

    conn: multiprocessing.connection.Connection
    messages: list[tuple[Any, ...]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    urgent: bool = False
    sent_at: float = 0.0

    def put(self, message: tuple[Any, ...], urgent: bool = False) -> None:
        with self.lock:
            self.messages.append(message)
            self.urgent = self.urgent or urgent

    def flush(self, force: bool = True) -> None:
        with self.lock:
            now = time.monotonic()
            if self.messages and (force or self.urgent or now - self.sent_at > METRICS_DELAY_S):
                self.conn.send(self.messages)
                self.messages, self.urgent, self.sent_at = [], False, now


class _ForwardingObserver:
    """The scheduler's observer and admission record, forwarded to the server."""

    def __init__(self, outbox: _Outbox) -> None:
        self._out = outbox

    def on_encode(self, size: int, queue_waits: list[float], seconds: float) -> None:
        self._out.put(("observe", "on_encode", (size, list(queue_waits), seconds)))

    def on_step(self, rows: int, seconds: float) -> None:
        self._out.put(("observe", "on_step", (rows, seconds)))

    def on_error(self, size: int, error: BaseException) -> None:
        self._out.put(("observe", "on_error", (size, RuntimeError(str(error)))))  # ORT's own errors may not pickle

    def on_first_token(self, seconds: float) -> None:
        self._out.put(("observe", "on_first_token", (seconds,)))

    def on_end(self, job: DecodeJob, reason: str) -> None:
        ended = _Ended(job.output_tokens, job.first_token_at, job.finished_at)
        self._out.put(("observe", "on_end", (ended, reason)), urgent=True)

    def on_running(self, sequences: int) -> None:  # the last call of every loop turn
        self._out.put(("observe", "on_running", (sequences,)))
        self._out.flush(force=False)

    def record(self, finished: int, busy_seconds: float) -> None:
        self._out.put(("record", finished, busy_seconds))

    def refusal(self, held: int) -> str:
        return ""  # the server decides admission before a request is sent here


def build_scheduler(
    spec: WorkerSpec, runtime: Runtime, observer: DecodeObserver, admission: Admission
) -> DecodeScheduler:
    """The model's scheduler, in a worker or (``DECODE_PROCESS=false``) in the server."""
    encode, step = decoding.session_callables(
        runtime.session(spec.encoder), runtime.session(spec.decoder), spec.contract
    )
    return DecodeScheduler(
        encode, step, bos_id=spec.bos_id, pad_id=spec.pad_id,
        batch_axes=decoding.state_batch_axes(spec.contract), grow_axes=decoding.state_grow_axes(spec.contract),
        memory_axes=decoding.memory_axes(spec.contract),
        max_rows=spec.max_rows, max_queue=spec.max_queue, max_encode_batch=spec.max_encode_batch,
        mode=spec.mode, observer=observer, name=spec.name, admission=admission,
    )


def worker_main(conn: multiprocessing.connection.Connection, spec: WorkerSpec) -> None:
    """The worker: build the scheduler, say ready (or why not), then serve the pipe until closed."""
    for sig in (signal.SIGINT, signal.SIGHUP):  # meant for the server, which closes the pipe when it is done
        signal.signal(sig, signal.SIG_IGN)
    outbox = _Outbox(conn)
    forward = _ForwardingObserver(outbox)
    try:
        if spec.settings.decode_cpus:  # before ORT and the decode thread start: they inherit it
            pin_process(spec.settings.decode_cpus)
        # The forwarder only records for admission (its refusal() admits all): the server decides.
        scheduler = build_scheduler(spec, Runtime(spec.settings), forward, forward)  # type: ignore[arg-type]
        finished, seconds = scheduler.warm_up(spec.warm_up)
    except Exception as exc:  # the server reports it as the model's load error
        conn.send(("error", str(exc)))
        return
    heap.settle()  # a full collection here would stall every translation in decoding
    conn.send(("ready", finished, seconds))
    jobs: dict[int, DecodeJob] = {}
    try:
        while True:
            message = conn.recv()
            if message[0] == "submit":
                _submit(scheduler, jobs, outbox, *message[1:])
            elif message[0] == "cancel" and (job := jobs.pop(message[1], None)) is not None:
                job.cancelled = True  # the scheduler drops it at its next step
            elif message[0] == "close":
                break
    except EOFError:  # the server is gone
        pass
    scheduler.close()  # fails what is left with UNAVAILABLE
    outbox.flush()


def _submit(scheduler: DecodeScheduler, jobs: dict[int, DecodeJob], outbox: _Outbox, key: int, src: list[int],
            search: Search, deadline: float | None, progress: bool, submitted: float) -> None:
    def sink(event: _Event) -> None:
        if event.result is not None or event.error is not None:
            jobs.pop(key, None)
        outbox.put(("event", key, event), urgent=True)

    job = DecodeJob(src, search, deadline, progress, sink=sink, submitted=submitted)
    jobs[key] = job
    try:
        scheduler.enqueue(job)
    except Exception as exc:  # full queue or closing: the request fails, as in the server's own process
        sink(_Event(error=exc))
        outbox.flush()


# -- the server side


class DecodeProcess:
    """``DecodeScheduler``'s interface (``submit``, ``requests``, ``close``), decoding in a worker process."""

    def __init__(self, spec: WorkerSpec, *, observer: DecodeObserver | None = None,
                 admission: Admission | None = None) -> None:
        self._spec, self._observer, self._admission = spec, observer, admission
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload([__name__])
        self._keys = itertools.count()
        self._jobs: dict[int, DecodeJob] = {}
        self._send_lock = threading.Lock()
        self._closed = False
        self._conn, self._process = self._start()  # raises the worker's load error
        self._reader = threading.Thread(target=self._read, name=f"decode reader {spec.name}", daemon=True)
        self._reader.start()

    def _start(self) -> tuple[multiprocessing.connection.Connection, Any]:
        conn, child = self._ctx.Pipe()
        process = self._ctx.Process(target=worker_main, args=(child, self._spec), name=f"decode {self._spec.name}",
                                    daemon=True)
        process.start()
        child.close()
        if not conn.poll(START_TIMEOUT_S):
            process.kill()
            raise RuntimeError(f"{self._spec.name}: the decode process did not start in {START_TIMEOUT_S:.0f} s")
        try:
            reply = conn.recv()
        except EOFError:
            process.join(5)
            reply = ("error", f"the decode process exited at start (code {process.exitcode})")
        if reply[0] != "ready":
            process.join(5)
            raise RuntimeError(reply[1])
        if self._admission is not None:
            self._admission.record(*reply[1:])
        return conn, process

    # -- the event loop side

    def submit(self, src: list[int], search: Search, deadline: float | None = None,
               progress: bool = True) -> DecodeJob:
        name = self._spec.name
        if self._closed:
            raise Unavailable(f"{name} is shutting down")
        if len(self._jobs) >= self._spec.max_queue + self._spec.max_rows:
            raise ResourceExhausted(f"{name}: {len(self._jobs)} translations already held (the limit); retry later")
        if self._admission and (refusal := self._admission.refusal(len(self._jobs))):
            raise ResourceExhausted(f"{name}: {refusal}")
        job = DecodeJob(src, search, deadline, progress)
        key = next(self._keys)
        job.on_cancel = functools.partial(self._cancel, key)
        self._jobs[key] = job  # before the send: a worker that dies after it fails the job
        if not self._send(("submit", key, src, search, deadline, progress, job.submitted)):
            self._jobs.pop(key, None)
            raise Unavailable(f"{name}: the decode process is restarting; retry")
        return job

    def _cancel(self, key: int) -> None:
        # Nobody waits for a cancelled job's end (the worker posts none): it stops counting now.
        if self._jobs.pop(key, None) is not None:
            self._send(("cancel", key))

    def _send(self, message: tuple[Any, ...]) -> bool:
        """False when there is no worker to send to (it died; the reader is replacing it)."""
        conn = self._conn
        if conn is None:
            return False
        try:
            with self._send_lock:
                conn.send(message)
        except OSError:
            return False
        return True

    @property
    def requests(self) -> int:
        """Requests waiting or decoding."""
        return len(self._jobs)

    def close(self) -> None:
        """Stop the worker; every waiting and running request fails with UNAVAILABLE."""
        self._closed = True
        self._send(("close",))
        self._process.join(CLOSE_TIMEOUT_S)
        if self._process.is_alive():  # stuck: what it held fails below
            log.error("%s: the decode process did not stop in %.0f s; killing it", self._spec.name, CLOSE_TIMEOUT_S)
            self._process.kill()
        self._reader.join()

    # -- the reader thread

    def _read(self) -> None:
        while True:
            try:
                messages = self._conn.recv()
            except (EOFError, OSError):
                if self._closed or not self._restart():
                    break
                continue
            for message in messages:
                self._dispatch(message)
        self._fail_held(Unavailable(f"{self._spec.name} is shutting down"))

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        if message[0] == "event":
            _, key, event = message
            job = self._jobs.get(key)
            if job is None:
                return
            if event.result is not None or event.error is not None:
                self._jobs.pop(key, None)  # a cancel on the event loop may have taken it already
            job._post(event)
        elif message[0] == "observe" and self._observer is not None:
            getattr(self._observer, message[1])(*message[2])
        elif message[0] == "record" and self._admission is not None:
            self._admission.record(message[1], message[2])

    def _fail_held(self, error: Exception) -> None:
        for key in list(self._jobs):
            job = self._jobs.pop(key, None)
            if job is not None:
                job._post(_Event(error=error))

    def _restart(self) -> bool:
        """The worker died: fail what it held, start another. False if that fails too."""
        self._process.join(1)
        code = self._process.exitcode
        log.error("%s: the decode process exited (code %s); restarting it", self._spec.name, code)
        self._conn = None
        self._fail_held(Unavailable(f"{self._spec.name}: the decode process exited (code {code}); retry"))
        while not self._closed:
            try:
                self._conn, self._process = self._start()
                return True
            except Exception:
                log.exception("%s: the decode process failed to restart; trying again in 1 s", self._spec.name)
                time.sleep(1)
        return False
