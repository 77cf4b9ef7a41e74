"""In-memory twins of the consumer's ports: a receipt queue and a receipt sink.

``InMemoryQueue`` keeps MNS semantics that matter to the consumer: a received message is
invisible until its visibility timeout passes, then delivered again with a new receipt handle;
only the newest handle of an in-flight message deletes it. ``InMemorySink`` stores records the
way ``SqlStore`` does (idempotent keys) and can be made unavailable or to refuse chosen messages.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from receiptd import ports

K = TypeVar("K")
V = TypeVar("V")


@dataclass
class _Entry:
    message_id: str
    body: str
    dequeue_count: int = 0
    handle: str = ""
    visible_at: float = 0.0


class InMemoryQueue:
    """A thread-safe ReceiptQueue; one instance may serve every thread (unlike the SDK)."""

    def __init__(
        self,
        name: str = "memory-queue",
        visibility_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self.visibility_timeout = visibility_timeout
        self._clock = clock
        self._cond = threading.Condition()
        self._entries: dict[str, _Entry] = {}
        self._order: deque[str] = deque()  # ids in send/redelivery order (lazily cleaned)
        self._ids = itertools.count(1)
        self._fail_receive: deque[ports.QueueError] = deque()
        self._fail_delete: deque[ports.QueueError] = deque()
        self.receive_calls = 0
        self.receive_waits: list[int] = []  # the wait of every receive, in call order
        self.aborts = 0
        self.deleted: list[str] = []  # message ids, in deletion order

    @property
    def name(self) -> str:
        return self._name

    # --- test controls -------------------------------------------------------------------

    def send(self, body: str) -> str:
        return self.send_many([body])[0]

    def send_many(self, bodies: Sequence[str]) -> list[str]:
        """Enqueue all at once: no receive sees only some of them."""
        with self._cond:
            ids = []
            for body in bodies:
                message_id = f"M{next(self._ids):08d}"
                self._entries[message_id] = _Entry(message_id, body, visible_at=self._clock())
                self._order.append(message_id)
                ids.append(message_id)
            self._cond.notify_all()
            return ids

    def fail_next_receive(self, *errors: ports.QueueError) -> None:
        with self._cond:
            self._fail_receive.extend(errors)

    def fail_next_delete(self, *errors: ports.QueueError) -> None:
        with self._cond:
            self._fail_delete.extend(errors)

    def expire_visibility(self, handle: str | None = None) -> None:
        """Make in-flight messages (all, or the one ``handle`` holds) visible again now; their
        handles go stale, as when a visibility timeout passes."""
        with self._cond:
            now = self._clock()
            for entry in self._entries.values():
                if handle is not None and entry.handle != handle:
                    continue
                if entry.handle and entry.visible_at > now:
                    entry.visible_at = now
                    entry.handle = ""
                    self._order.append(entry.message_id)
            self._cond.notify_all()

    def depth(self) -> int:
        with self._cond:
            return len(self._entries)

    # --- ReceiptQueue --------------------------------------------------------------------

    def receive(self, max_messages: int, wait_seconds: int) -> list[ports.QueueMessage]:
        with self._cond:
            self.receive_calls += 1
            self.receive_waits.append(wait_seconds)
            if self._fail_receive:
                raise self._fail_receive.popleft()
            aborts = self.aborts
            deadline = self._clock() + wait_seconds
            while True:
                taken = self._take(max_messages)
                remaining = deadline - self._clock()
                if taken or remaining <= 0 or self.aborts != aborts:
                    return taken
                self._cond.wait(min(remaining, 0.05))

    def _take(self, max_messages: int) -> list[ports.QueueMessage]:
        now = self._clock()
        self._requeue_expired(now)
        taken: list[ports.QueueMessage] = []
        while self._order and len(taken) < max_messages:
            entry = self._entries.get(self._order.popleft())
            if entry is None or entry.visible_at > now:
                continue  # deleted, or in flight again since it was queued
            entry.dequeue_count += 1
            entry.handle = f"{entry.message_id}:{entry.dequeue_count}"
            entry.visible_at = now + self.visibility_timeout
            taken.append(
                ports.QueueMessage(entry.message_id, entry.handle, entry.body, entry.dequeue_count)
            )
        return taken

    def _requeue_expired(self, now: float) -> None:
        for entry in self._entries.values():
            if entry.handle and entry.visible_at <= now:
                entry.handle = ""  # the old handle is stale from now on
                self._order.append(entry.message_id)

    def delete(self, receipt_handles: Sequence[str]) -> list[ports.DeleteFailure]:
        with self._cond:
            if self._fail_delete:
                raise self._fail_delete.popleft()
            failures = []
            now = self._clock()
            for handle in receipt_handles:
                entry = self._entries.get(handle.rsplit(":", 1)[0])
                if entry is None or entry.handle != handle or entry.visible_at <= now:
                    failures.append(
                        ports.DeleteFailure(handle, "ReceiptHandleError", "stale receipt handle")
                    )
                    continue
                del self._entries[entry.message_id]
                self.deleted.append(entry.message_id)
            return failures

    def abort(self) -> None:
        """End the receives under way (they return what they hold, usually ``[]``); the
        shared instance stays usable by other threads and later consumers."""
        with self._cond:
            self.aborts += 1
            self._cond.notify_all()

    def close(self) -> None:
        """Nothing to release; the shared instance stays usable by other threads."""


@dataclass
class InMemorySink:
    """A ReceiptSink keyed like the SQL schema, with injectable failures.

    ``unavailable``: every write and ping raises StoreUnavailable (nothing written).
    ``refuse``: message ids whose report/reply row makes the write raise StoreWriteError.
    """

    unavailable: bool = False
    refuse: set[str] = field(default_factory=set)
    # Keyed by account first, as the unique keys of migration 0005.
    reports: dict[tuple[str, str, str], ports.ReportRecord] = field(default_factory=dict)
    inbound: dict[tuple[str, str, str, str], ports.InboundRecord] = field(default_factory=dict)
    dead: dict[tuple[str, str, str], ports.DeadRecord] = field(default_factory=dict)
    writes: int = 0
    failed_writes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def ping(self) -> None:
        if self.unavailable:
            raise ports.StoreUnavailable("in-memory sink made unavailable")

    def write_batch(self, batch: ports.Batch, now: datetime) -> ports.BatchResult:
        with self._lock:
            self._check(batch)
            self.writes += 1
            reports_new = sum(self._add(self.reports, _report_key(r), r) for r in batch.reports)
            inbound_new = sum(self._add(self.inbound, _inbound_key(r), r) for r in batch.inbound)
            dead_new = sum(
                self._add(self.dead, (d.account, d.queue, d.message_id), d) for d in batch.dead
            )
            return ports.BatchResult(reports_new, inbound_new, dead_new)

    def _check(self, batch: ports.Batch) -> None:
        if self.unavailable:
            self.failed_writes += 1
            raise ports.StoreUnavailable("in-memory sink made unavailable")
        # Only the typed rows are refused: a dead letter (raw bytes + text) always fits.
        ids = {r.message_id for r in batch.reports} | {r.message_id for r in batch.inbound}
        refused = sorted(ids & self.refuse)
        if refused:
            self.failed_writes += 1
            raise ports.StoreWriteError(f"value refused for message {refused[0]}")

    @staticmethod
    def _add(table: dict[K, V], key: K, value: V) -> int:
        if key in table:
            return 0
        table[key] = value
        return 1


def _report_key(record: ports.ReportRecord) -> tuple[str, str, str]:
    return (record.account, record.report.biz_id, record.report.phone_number)


def _inbound_key(record: ports.InboundRecord) -> tuple[str, str, str, str]:
    reply = record.reply
    return (record.account, reply.phone_number, reply.sequence_id, reply.dest_code)
