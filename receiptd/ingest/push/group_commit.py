"""Group commit: the records of concurrent requests written in one transaction.

Each pushed request must be committed before it is answered, and with small requests (Alibaba
may push one receipt per request) the commit, not the parsing, bounds throughput. Requests
that arrive while a transaction is under way queue up; the next one of them becomes the leader
and writes everything queued so far in one transaction; each caller returns (or raises) once
the transaction holding its records has finished. A lone request is written at once, so
nothing waits for company.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from receiptd import ports


@dataclass(eq=False)
class _Waiter:
    batch: ports.Batch
    wake: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    finished: bool = False
    error: BaseException | None = None
    result: ports.BatchResult = field(default_factory=ports.BatchResult)


def merge(batches: list[ports.Batch]) -> ports.Batch:
    return ports.Batch(
        reports=[r for b in batches for r in b.reports],
        inbound=[r for b in batches for r in b.inbound],
        dead=[d for b in batches for d in b.dead],
    )


class GroupCommit:
    """``commit(batch)`` for many threads; ``write`` merges concurrent calls (at most
    ``max_records`` records per transaction). ``write`` returns what ``commit`` returned for
    the transaction that held the caller's records (shared with the other callers in it), or
    raises what it raised."""

    def __init__(
        self, commit: Callable[[ports.Batch], ports.BatchResult], max_records: int = 5000
    ) -> None:
        self._commit = commit
        self._max = max_records
        self._lock = threading.Lock()
        self._queue: deque[_Waiter] = deque()
        self._busy = False

    def write(self, batch: ports.Batch) -> ports.BatchResult:
        me = _Waiter(batch)
        with self._lock:
            self._queue.append(me)
            if not self._busy:  # nobody is writing: the queue held nothing, lead at once
                self._busy = me.lead = True
        while True:
            if me.lead:
                me.lead = False
                self._lead()
            if me.finished:
                break
            me.wake.wait()
            me.wake.clear()
        if me.error is not None:
            raise _again(me.error)
        return me.result

    def _lead(self) -> None:
        """Write one group (it starts with the leader itself), then hand over."""
        group = self._take()
        error: BaseException | None = None
        result = ports.BatchResult()
        try:
            result = self._commit(merge([w.batch for w in group]))
        except BaseException as exc:  # every member of the group gets the outcome
            error = exc
        for waiter in group:
            waiter.error, waiter.result, waiter.finished = error, result, True
            waiter.wake.set()
        with self._lock:
            if self._queue:
                successor = self._queue[0]
                successor.lead = True
                successor.wake.set()
            else:
                self._busy = False

    def _take(self) -> list[_Waiter]:
        with self._lock:
            group = [self._queue.popleft()]
            records = len(group[0].batch)
            while self._queue and records + len(self._queue[0].batch) <= self._max:
                waiter = self._queue.popleft()
                records += len(waiter.batch)
                group.append(waiter)
            return group


def _again(error: BaseException) -> BaseException:
    """A fresh exception per caller (one object raised in several threads would share and
    garble its traceback)."""
    if isinstance(error, ports.StoreError):
        fresh = type(error)(str(error))
        fresh.__cause__ = error
        return fresh
    return error
