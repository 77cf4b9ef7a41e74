"""InMemoryEventOutbox: ``ports.EventOutbox`` in dicts, for unit tests of the webhook dispatcher.

It keeps the SQL outbox's rules (claims as leases, an outcome recorded only on a pending
delivery, prune only of events no endpoint waits for), so the same contract suite
(tests/integration/test_event_outbox_contract.py) passes over both. :meth:`publish` stands in
for what settling a send writes: the event and one delivery per endpoint that wants it.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from receiptd import domain, events, ports

PENDING = domain.DeliveryStatus.PENDING


class Subscription(Protocol):
    """An endpoint and the events it wants: ``receiptd.db.outbox.Route`` is one (the twin
    cannot import it: ``db`` and ``testing`` are sibling layers)."""

    @property
    def endpoint(self) -> str: ...

    def wants(self, event_type: str, account: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Everything:
    """An endpoint given by its bare name: it wants every event."""

    endpoint: str

    def wants(self, event_type: str, account: str) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One ``event_delivery`` row."""

    id: int
    event: events.Event
    endpoint: str
    next_attempt_at: datetime
    pending_since: datetime
    status: domain.DeliveryStatus = PENDING
    attempts: int = 0
    last_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None

    def claimed(self) -> ports.ClaimedDelivery:
        e = self.event
        return ports.ClaimedDelivery(
            self.id,
            e.id,
            e.type.value,
            e.created_at,
            self.attempts,
            self.pending_since,
            e.body,
            e.account,
        )


class InMemoryEventOutbox:
    """A thread-safe ``ports.EventOutbox``; ``unavailable`` makes every port call fail as a
    database outage would. ``endpoints`` are names (every event) or subscriptions (the
    types and accounts a ``Route`` names)."""

    def __init__(self, endpoints: Iterable[str | Subscription] = ("app",)) -> None:
        self.routes = tuple(Everything(e) if isinstance(e, str) else e for e in endpoints)
        self.endpoints = tuple(r.endpoint for r in self.routes)
        self.unavailable = False
        self.events: dict[str, events.Event] = {}
        self.rows: dict[int, DeliveryRow] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def publish(self, new: Sequence[events.Event], now: datetime) -> None:
        """Store these events with one delivery per endpoint that wants it, due at ``now``."""
        with self._lock:
            for e in new:
                self.events[e.id] = e
                for route in self.routes:
                    if route.wants(e.type.value, e.account):
                        row_id = next(self._ids)
                        self.rows[row_id] = DeliveryRow(row_id, e, route.endpoint, now, now)

    def delivery(self, event_id: str, endpoint: str = "app") -> DeliveryRow:
        """The delivery of one event to one endpoint (for assertions)."""
        with self._lock:
            (row,) = (
                r for r in self.rows.values() if r.event.id == event_id and r.endpoint == endpoint
            )
            return row

    # --- ports.EventOutbox ----------------------------------------------------------------

    def claim(
        self, endpoint: str, now: datetime, limit: int, lease: timedelta
    ) -> list[ports.ClaimedDelivery]:
        with self._lock:
            self._check()
            due = sorted(
                (
                    r
                    for r in self.rows.values()
                    if r.endpoint == endpoint and r.status is PENDING and r.next_attempt_at <= now
                ),
                key=lambda r: (r.next_attempt_at, r.id),
            )[:limit]
            for r in due:
                self.rows[r.id] = replace(r, next_attempt_at=now + lease)
            return [r.claimed() for r in sorted(due, key=lambda r: r.id)]

    def record(self, attempts: Sequence[ports.DeliveryAttempt], now: datetime) -> None:
        with self._lock:
            self._check()
            for a in attempts:
                row = self.rows.get(a.delivery_id)
                if row is None or row.status is not PENDING:
                    continue  # settled meanwhile: stays as it is
                self.rows[row.id] = replace(
                    row,
                    status=a.result,
                    attempts=row.attempts + 1,
                    last_attempt_at=now,
                    last_status_code=a.status_code,
                    last_error=a.error[:512] if a.error else None,
                    delivered_at=now if a.result is domain.DeliveryStatus.DELIVERED else None,
                    next_attempt_at=a.next_attempt_at or now,
                )

    def release(self, delivery_ids: Sequence[int], now: datetime) -> None:
        with self._lock:
            self._check()
            for i in delivery_ids:
                row = self.rows.get(i)
                if row is not None and row.status is PENDING:
                    self.rows[i] = replace(row, next_attempt_at=now)

    def backlog(self) -> dict[str, ports.DeliveryBacklog]:
        with self._lock:
            self._check()
            since: dict[str, list[datetime]] = {}
            for r in self.rows.values():
                if r.status is PENDING:
                    since.setdefault(r.endpoint, []).append(r.pending_since)
            return {e: ports.DeliveryBacklog(len(t), min(t)) for e, t in since.items()}

    def prune(self, before: datetime, limit: int) -> int:
        with self._lock:
            self._check()
            waiting = {r.event.id for r in self.rows.values() if r.status is PENDING}
            old = [i for i, e in self.events.items() if e.created_at < before and i not in waiting]
            gone = set(old[:limit])
            for i in gone:
                del self.events[i]
            self.rows = {k: r for k, r in self.rows.items() if r.event.id not in gone}
            return len(gone)

    def _check(self) -> None:
        if self.unavailable:
            raise ports.StoreUnavailable("in-memory event outbox made unavailable")
