"""A single background thread that runs callbacks at given times of its clock (receipt
arrival, push retries). On a ``ManualClock`` it waits for ``advance`` instead of real time."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

from receiptd_emulator.clock import Clock, ManualClock

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._stopped = False
        self._running = False  # a callback is under way (wait_idle)
        self._thread: threading.Thread | None = None
        self.failures = 0  # callbacks that raised
        if isinstance(clock, ManualClock):
            clock.on_advance(self.wake)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="emulator-scheduler", daemon=True)
        self._thread.start()

    def now(self) -> float:
        """This scheduler's time: what ``at`` compares with."""
        return self._clock()

    def at(self, due: float, callback: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._seq), callback))
            # notify_all: the thread re-arms its wait for a new earliest item, and a
            # wait_pending caller sees the new item.
            self._cond.notify_all()

    def after(self, delay: float, callback: Callable[[], None]) -> float:
        """Run ``callback`` ``delay`` seconds of this clock from now; returns when."""
        due = self._clock() + delay
        self.at(due, callback)
        return due

    def pending(self) -> int:
        with self._cond:
            return len(self._heap)

    def next_due(self) -> float | None:
        """When the earliest pending callback is due (None: nothing pending)."""
        with self._cond:
            return self._heap[0][0] if self._heap else None

    def wait_pending(self, count: int = 1, timeout: float = 30.0) -> float | None:
        """Wait until ``count`` callbacks are pending; when the earliest is due (None if not
        within ``timeout``). A test on a ``ManualClock`` advances it only once its timer is
        set, instead of guessing how long setting it takes."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._heap) >= count, timeout):
                return None
            return self._heap[0][0]

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until no callback is pending or running: every scheduled receipt has reached
        its queue (or push buffer). True when idle within ``timeout``."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._heap and not self._running, timeout)

    def wake(self) -> None:
        """The clock moved (``ManualClock.advance``): look at the heap again."""
        with self._cond:
            self._cond.notify_all()

    def stop(self) -> None:
        """Idempotent; pending callbacks are dropped."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > self._clock()):
                    pause = self._heap[0][0] - self._clock() if self._heap else None
                    self._cond.wait(pause)
                if self._stopped:
                    return
                _, _, callback = heapq.heappop(self._heap)
                self._running = True
            # A catch-all on purpose: callbacks are the emulator's own (enqueue a receipt,
            # requeue a push) and touch no peer, so what raises is a defect; it is logged and
            # counted, and the timers of every other receipt keep running.
            try:
                callback()
            except Exception:
                self.failures += 1
                log.exception("emulator scheduled callback failed")
            finally:
                with self._cond:
                    self._running = False
                    self._cond.notify_all()  # wait_idle
