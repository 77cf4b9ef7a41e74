"""A thread-safe token bucket (``ports.RateLimiter``) for provider API calls.

Implemented as GCRA ("virtual scheduling"): each ``acquire`` reserves the next free slot under
a lock and sleeps outside it, so threads never spin and the bound holds across threads: in any
interval of length T at most ``burst + rate * T`` calls are let through. A sleep that
overshoots is absorbed by the burst allowance instead of accumulating.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from receiptd import ports


class TokenBucket:
    """``rate`` requests per second with bursts of up to ``burst`` requests."""

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0 requests per second")
        if burst < 1:
            raise ValueError("burst must be >= 1")
        self.rate = float(rate)
        self.burst = int(burst)
        self._interval = 1.0 / self.rate
        self._tolerance = (self.burst - 1) * self._interval
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tat: float | None = None  # theoretical arrival time of the next request
        self.acquired = 0

    def acquire(self) -> None:
        """Block until one more request is allowed, then count it."""
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)

    def reserve(self) -> float:
        """Take the next slot and return how long the caller must wait for it (seconds)."""
        with self._lock:
            now = self._clock()
            tat = now if self._tat is None else max(self._tat, now)
            wait = max(0.0, tat - self._tolerance - now)
            self._tat = tat + self._interval
            self.acquired += 1
        return wait


def default_burst(rate: float) -> int:
    """A tenth of a second's worth of requests, at least one: smooths sleep overshoot."""
    return max(1, int(rate / 10))


class Stopped(Exception):
    """Raised in place of a call once the owner of a :class:`Stoppable` limiter is stopping."""


class Stoppable:
    """A limiter that refuses further calls once ``stopping`` is set (a cycle ends early) and
    reports each call it lets through to ``on_call`` (a heartbeat)."""

    def __init__(
        self,
        limiter: ports.RateLimiter,
        stopping: threading.Event,
        on_call: Callable[[], None] = lambda: None,
    ) -> None:
        self._limiter = limiter
        self._stopping = stopping
        self._on_call = on_call

    def acquire(self) -> None:
        if self._stopping.is_set():
            raise Stopped
        self._limiter.acquire()
        # Again after the wait for a slot (up to 1/rate): a stop that came meanwhile must not
        # let one more call out (a SIGTERM mid-cycle makes at most the call in flight).
        if self._stopping.is_set():
            raise Stopped
        self._on_call()
