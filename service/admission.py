"""Admission by latency budget: refuse new work at once rather than let every request wait.

Little's law: the requests a model holds, divided by the rate it gets through them,
is how long the newest will take. The rate is the model's capacity, measured while it
works (requests finished per second of busy time, over its recent runs, times the
runs it can do at once), so a model that was idle a moment ago keeps its estimate. A
request is admitted while what the model holds would be done within the budget;
past that, RESOURCE_EXHAUSTED at once, and admitted requests keep their latency.
An idle model always admits. Until ``floor`` requests have finished since it
loaded, a model admits up to ``floor`` at once whatever the estimate says: an
estimate from a first batch that has not finished yet is far too low, and a
batch must be able to fill; and no more than that, or a burst into a cold model
would all run together, each several times slower than alone. After that the
budget alone decides, so a budget shorter than a full batch's time is honoured.
(Counted since load, not over the history: a decoder's runs are single steps,
and 256 of them may finish fewer than ``floor`` requests however long the model
has been working. A history with no request finished in it, long decodes all
running, gives no estimate either: the floor is the limit then too.)
"""

from __future__ import annotations

import collections
import threading


class Admission:
    def __init__(self, budget_s: float, floor: int, parallel: int = 1, history: int = 256) -> None:
        self.budget_s, self.floor, self._parallel = budget_s, floor, parallel
        self._runs: collections.deque[tuple[int, float]] = collections.deque(maxlen=history)
        # Running sums over _runs: a busy model asks on every arrival, and summing 256
        # runs each time was a visible share of the event loop's time.
        self._sum_finished, self._sum_busy = 0, 0.0
        self._records = 0
        self._finished = 0  # since load
        self._lock = threading.Lock()  # runs are recorded from worker threads

    def record(self, finished: int, busy_seconds: float) -> None:
        """One run: how many requests it finished and how long it took."""
        with self._lock:
            if len(self._runs) == self._runs.maxlen:
                old_n, old_s = self._runs[0]
                self._sum_finished -= old_n
                self._sum_busy -= old_s
            self._runs.append((finished, busy_seconds))
            self._sum_finished += finished
            self._sum_busy += busy_seconds
            self._finished += finished
            self._records += 1
            if self._records % self._runs.maxlen == 0:  # once per history: shed float drift
                self._sum_busy = sum(s for _, s in self._runs)

    def _history(self) -> tuple[int, float]:
        with self._lock:
            return self._sum_finished, self._sum_busy

    def capacity(self) -> float:
        """Requests finished per second of work, times the runs that go at once (0: no history)."""
        return self._capacity(*self._history())

    def _capacity(self, finished: int, busy: float) -> float:
        return finished / busy * self._parallel if busy > 0 else 0.0

    def refusal(self, held: int) -> str:
        """Why one more request is refused when the model holds ``held``; "" admits it."""
        if not self.budget_s or held == 0:
            return ""
        capacity = self._capacity(*self._history())
        if self._finished < self.floor or not capacity:  # no estimate to trust: up to the floor goes in
            return "" if held < self.floor else self._full(held)
        if held < capacity * self.budget_s:
            return ""
        return (
            f"overloaded: {held} requests ahead, about {held / capacity * 1000:.0f} ms of work at "
            f"{capacity:.0f}/s, over the {self.budget_s * 1000:.0f} ms budget; retry later"
        )

    def _full(self, held: int) -> str:
        return f"overloaded: {held} requests ahead and none finished lately to estimate their time; retry later"
