"""Health as data: loops report heartbeats and successes; probes read them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from receiptd import metrics


@dataclass
class LoopState:
    name: str
    last_heartbeat: float = field(default_factory=time.monotonic)
    last_success: float | None = None
    last_error: str | None = None
    idle: bool = False  # between runs of a periodic job: no heartbeat is expected


class Health:
    """Thread-safe registry of loop heartbeats and named readiness checks."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._loops: dict[str, LoopState] = {}

    def register(self, loop: str) -> None:
        with self._lock:
            self._loops[loop] = LoopState(loop, last_heartbeat=self._clock())

    def heartbeat(self, loop: str) -> None:
        with self._lock:
            state = self._loops.setdefault(loop, LoopState(loop))
            state.last_heartbeat = self._clock()
            state.idle = False

    def idle(self, loop: str) -> None:
        """The loop rests until its next heartbeat (a periodic job between runs)."""
        with self._lock:
            state = self._loops.setdefault(loop, LoopState(loop))
            state.last_heartbeat = self._clock()
            state.idle = True

    def success(self, loop: str) -> None:
        with self._lock:
            state = self._loops.setdefault(loop, LoopState(loop))
            state.last_heartbeat = state.last_success = self._clock()
            state.last_error = None

    def error(self, loop: str, message: str) -> None:
        with self._lock:
            state = self._loops.setdefault(loop, LoopState(loop))
            state.last_heartbeat = self._clock()
            state.last_error = message

    def snapshot(self) -> dict[str, LoopState]:
        with self._lock:
            return {
                k: LoopState(v.name, v.last_heartbeat, v.last_success, v.last_error, v.idle)
                for k, v in self._loops.items()
            }

    def stale_loops(self, threshold: float) -> list[str]:
        """Loops that have not heartbeated within ``threshold`` seconds (idle ones never are)."""
        now = self._clock()
        stale = []
        for name, state in self.snapshot().items():
            age = 0.0 if state.idle else now - state.last_heartbeat
            metrics.HEARTBEAT_AGE.labels(name).set(age)
            if age > threshold:
                stale.append(name)
        return stale
