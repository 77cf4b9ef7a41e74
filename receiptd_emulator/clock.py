"""The emulator's time for tokens and timers, and a clock a test moves by hand.

``Emulator(clock=...)`` takes any ``Callable[[], float]`` returning epoch seconds; it decides
when STS tokens expire, when a receipt reaches its queue and when a failed push is retried.
Signatures, queue visibility and long polls keep the real time: they are checked against
the client's own clock, or hold a real thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Clock = Callable[[], float]


class ManualClock:
    """Epoch seconds that move only when ``advance`` is called (thread-safe).

    Whoever waits for a moment of this clock (the emulator's scheduler) registers a wake-up
    with ``on_advance``; ``advance`` calls it after moving, so a timer due at the new time runs
    at once instead of after a real-time pause the test never waits out.
    """

    def __init__(self, start: float | None = None) -> None:
        self._lock = threading.Lock()
        self._now = time.time() if start is None else start
        self._listeners: list[Callable[[], None]] = []

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        with self._lock:
            self._now += seconds
            now, listeners = self._now, list(self._listeners)
        for wake in listeners:
            wake()
        return now

    def on_advance(self, wake: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(wake)
