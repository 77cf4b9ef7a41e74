"""The MNS long-poll cap: concurrent long polls per queue and per access key.

MNS caps concurrent long polls per queue and user; past the cap ``ReceiveMessage`` answers at
once with 404 ``MessageNotExist`` instead of holding the request, and the request is still
billed (docs/providers/aliyun-mns.md, "Receiving"; docs/emulator.md, "Long-poll cap"). A
receive without a wait (``waitseconds=0``, or none with the queue's ``PollingWaitSeconds`` 0)
is not a long poll and is never refused.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class LongPollCap:
    """Concurrent long polls allowed; 0 = no cap."""

    per_queue: int = 0
    per_key: int = 0

    def __post_init__(self) -> None:
        if self.per_queue < 0 or self.per_key < 0:
            raise ValueError("long-poll caps must be >= 0 (0 = no cap)")


class LongPollRefused(Exception):
    """Past the cap: answer MessageNotExist at once."""


class LongPolls:
    """Thread-safe count of long polls being held, by queue and by access key."""

    def __init__(self, cap: LongPollCap | None = None) -> None:
        self._lock = threading.Condition()  # wait_holding waits on it
        self.cap = cap or LongPollCap()
        self._queues: Counter[str] = Counter()
        self._keys: Counter[str] = Counter()
        self._peak: Counter[str] = Counter()
        self._held = 0
        self._refused = 0

    def set_cap(self, cap: LongPollCap) -> None:
        with self._lock:
            self.cap = cap

    @contextmanager
    def hold(self, queue: str, key: str) -> Iterator[None]:
        """Hold one long-poll slot for the duration; LongPollRefused when past the cap."""
        with self._lock:
            cap = self.cap
            if (cap.per_queue and self._queues[queue] >= cap.per_queue) or (
                cap.per_key and self._keys[key] >= cap.per_key
            ):
                self._refused += 1
                raise LongPollRefused(queue)
            self._queues[queue] += 1
            self._keys[key] += 1
            self._held += 1
            self._peak[queue] = max(self._peak[queue], self._queues[queue])
            self._lock.notify_all()
        try:
            yield
        finally:
            with self._lock:
                self._queues[queue] -= 1
                self._keys[key] -= 1
                self._lock.notify_all()

    def wait_holding(self, queue: str, count: int, timeout: float) -> bool:
        """Wait until exactly ``count`` long polls are held on ``queue`` (tests: a poll has
        started waiting, or its thread has let go of it)."""
        with self._lock:
            return self._lock.wait_for(lambda: self._queues[queue] == count, timeout)

    def stats(self) -> dict[str, Any]:
        """Cap, long polls held now and at most (by queue), held in total and refused."""
        with self._lock:
            return {
                "per_queue": self.cap.per_queue,
                "per_key": self.cap.per_key,
                "holding": {q: n for q, n in self._queues.items() if n},
                "peak": dict(self._peak),
                "held": self._held,
                "refused": self._refused,
            }

    def reset_stats(self) -> None:
        with self._lock:
            self._peak = Counter({q: n for q, n in self._queues.items() if n})
            self._held = 0
            self._refused = 0
