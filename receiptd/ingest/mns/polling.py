"""How a consumer holds its long polls: refused polls, and the crew of workers per queue.

MNS caps concurrent long polls per queue and user; past the cap it answers ``ReceiveMessage``
at once with ``MessageNotExist`` instead of holding the request, and still bills it
(docs/consumer.md, "Long polling"). An empty answer that comes back much sooner than the wait
asked for is therefore a refusal, not an empty queue: re-polling at once would spin.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

from receiptd import metrics
from receiptd.domain import DEFAULT_ACCOUNT
from receiptd.logs import get_logger

log = get_logger(__name__)

#: An empty answer in less than this share of the wait asked for is a refusal. A real empty
#: long poll takes the whole wait (MNS answers early only with messages).
REFUSAL_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class RefusalBackoff:
    """Pause after the n-th refusal in a row: ``base`` doubling to ``cap``, each in [d/2, d].

    The cap is of the order of the long-poll wait: a capped queue then costs about what one
    held long poll would, and the poll is retried soon after another consumer frees a slot.
    """

    base: float = 1.0
    cap: float = 20.0

    def delay(self, attempt: int) -> float:
        ceiling = max(self.base, min(self.cap, self.base * 2 ** min(attempt, 30)))
        return float(ceiling / 2 + random.uniform(0, ceiling / 2))

    @classmethod
    def for_wait(cls, wait_seconds: int) -> RefusalBackoff:
        return cls(base=1.0, cap=float(max(1, wait_seconds)))


class RefusalTracker:
    """One long-polling worker's view of refusals: counts them, logs each episode once.

    ``observe`` is called after every receive with a wait; it returns how long to pause before
    the next one (0 when the answer was not a refusal). An episode starts with the first
    refusal (``mns_polls_refused``, warning) and ends with the first answer that is not one
    (``mns_polls_refused_ended``, info, with the count and duration).
    """

    def __init__(
        self,
        label: str,
        backoff: RefusalBackoff,
        clock: Callable[[], float],
        account: str = DEFAULT_ACCOUNT,
    ) -> None:
        self._label = label
        self._backoff = backoff
        self._clock = clock
        self._counter = metrics.POLLS_REFUSED.labels(account, label)
        self._streak = 0
        self._since = 0.0

    def observe(self, wait: int, elapsed: float, empty: bool) -> float:
        if wait > 0 and empty and elapsed < wait * REFUSAL_SHARE:
            return self._refused(wait, elapsed)
        if self._streak:
            log.info(
                "mns_polls_refused_ended",
                queue=self._label,
                refused=self._streak,
                duration=round(self._clock() - self._since, 3),
            )
            self._streak = 0
        return 0.0

    def _refused(self, wait: int, elapsed: float) -> float:
        self._counter.inc()
        if not self._streak:
            self._since = self._clock()
            log.warning(
                "mns_polls_refused",
                queue=self._label,
                wait=wait,
                answered_after=round(elapsed, 3),
                hint="MNS caps concurrent long polls per queue and user; backing off",
            )
        delay = self._backoff.delay(self._streak)
        self._streak += 1
        return delay


class Crew:
    """The workers of one queue: one long-polls while the queue is idle, the others sleep.

    A receive that returns messages wakes one sleeper (each woken worker that finds messages
    wakes the next, so the crew doubles per round trip under load); a helper whose receive
    comes back empty goes back to sleep. ``stop`` wakes every sleeper for good.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._asleep = 0
        self._wakeups = 0
        self._stopped = False

    @property
    def asleep(self) -> int:
        with self._cond:
            return self._asleep

    def wake_one(self) -> None:
        with self._cond:
            if self._wakeups < self._asleep:
                self._wakeups += 1
                self._cond.notify()

    def sleep(self) -> bool:
        """Block until woken (True) or stopped (False)."""
        with self._cond:
            self._asleep += 1
            try:
                while not self._wakeups and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return False
                self._wakeups -= 1
                return True
            finally:
                self._asleep -= 1

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
