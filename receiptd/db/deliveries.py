"""``ports.EventOutbox`` in SQL: the webhook dispatcher's side of the outbox.

:mod:`receiptd.db.outbox` writes events and their ``event_delivery`` rows; this module claims
the due ones for a worker, records what each POST came to, hands back what a stopping
worker did not attempt, counts the backlog and prunes finished events.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, delete, exists, func, select, update

from receiptd import domain, ports
from receiptd.db.locks import take_write_lock
from receiptd.db.models import DELIVERY, EVENT
from receiptd.db.store import SqlStore

PENDING = domain.DeliveryStatus.PENDING.value


class SqlEventOutbox:
    """``ports.EventOutbox`` on top of :class:`SqlStore`; every method is one short
    transaction, its driver errors translated to the store errors."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    def claim(
        self, endpoint: str, now: datetime, limit: int, lease: timedelta
    ) -> list[ports.ClaimedDelivery]:
        return self.store.run(lambda conn: claim(conn, endpoint, now, limit, lease))

    def record(self, attempts: Sequence[ports.DeliveryAttempt], now: datetime) -> None:
        if attempts:
            self.store.run(lambda conn: record(conn, attempts, now))

    def release(self, delivery_ids: Sequence[int], now: datetime) -> None:
        if delivery_ids:
            self.store.run(lambda conn: release(conn, delivery_ids, now))

    def backlog(self) -> dict[str, ports.DeliveryBacklog]:
        return self.store.run(backlog)

    def prune(self, before: datetime, limit: int) -> int:
        return self.store.run(lambda conn: prune(conn, before, limit))


def claim(
    conn: Connection, endpoint: str, now: datetime, limit: int, lease: timedelta
) -> list[ports.ClaimedDelivery]:
    """Claim up to ``limit`` due deliveries of one endpoint: ``FOR UPDATE SKIP LOCKED`` keeps
    concurrent replicas on different rows (PostgreSQL; MariaDB ≥ 10.6), and pushing the due
    time to the lease's end makes them invisible to other claims after commit. A worker that
    dies holding a claim leaves it due again when the lease ends (at-least-once)."""
    take_write_lock(conn)
    due = (
        select(DELIVERY.c.id)
        .where(
            DELIVERY.c.endpoint == endpoint,
            DELIVERY.c.status == PENDING,
            DELIVERY.c.next_attempt_at <= now,
        )
        .order_by(DELIVERY.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(conn.execute(due).scalars())
    if not ids:
        return []
    conn.execute(update(DELIVERY).where(DELIVERY.c.id.in_(ids)).values(next_attempt_at=now + lease))
    query = (
        select(
            DELIVERY.c.id,
            DELIVERY.c.event_id,
            EVENT.c.type,
            EVENT.c.created_at,
            DELIVERY.c.attempts,
            DELIVERY.c.pending_since,
            EVENT.c.payload,
            EVENT.c.account,
        )
        .join(EVENT, EVENT.c.id == DELIVERY.c.event_id)
        .where(DELIVERY.c.id.in_(ids))
        .order_by(DELIVERY.c.next_attempt_at, DELIVERY.c.id)
    )
    return [ports.ClaimedDelivery(*row) for row in conn.execute(query)]


_RECORD = (
    update(DELIVERY)
    .where(DELIVERY.c.id == bindparam("b_id"), DELIVERY.c.status == PENDING)
    .values(
        status=bindparam("b_status"),
        attempts=DELIVERY.c.attempts + 1,
        last_attempt_at=bindparam("b_now"),
        last_status_code=bindparam("b_code"),
        last_error=bindparam("b_error"),
        delivered_at=bindparam("b_delivered"),
        next_attempt_at=bindparam("b_next"),
    )
)


def record(conn: Connection, attempts: Sequence[ports.DeliveryAttempt], now: datetime) -> None:
    """Store the outcome of each attempt (a delivery settled meanwhile stays as it is)."""
    if not attempts:
        return
    delivered = domain.DeliveryStatus.DELIVERED
    params = [
        {
            "b_id": a.delivery_id,
            "b_status": a.result.value,
            "b_now": now,
            "b_code": a.status_code,
            "b_error": a.error[:512] if a.error else None,
            "b_delivered": now if a.result is delivered else None,
            "b_next": a.next_attempt_at or now,
        }
        for a in attempts
    ]
    conn.execute(_RECORD, params)


def release(conn: Connection, delivery_ids: Sequence[int], now: datetime) -> None:
    """Hand claimed but unattempted deliveries back at once (a worker stopping)."""
    if delivery_ids:
        conn.execute(
            update(DELIVERY)
            .where(DELIVERY.c.id.in_(list(delivery_ids)), DELIVERY.c.status == PENDING)
            .values(next_attempt_at=now)
        )


def backlog(conn: Connection) -> dict[str, ports.DeliveryBacklog]:
    """Pending deliveries per endpoint, for the metrics."""
    query = (
        select(DELIVERY.c.endpoint, func.count(), func.min(DELIVERY.c.pending_since))
        .where(DELIVERY.c.status == PENDING)
        .group_by(DELIVERY.c.endpoint)
    )
    return {row[0]: ports.DeliveryBacklog(int(row[1]), row[2]) for row in conn.execute(query)}


def prune(conn: Connection, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` events created before ``before`` that no endpoint still waits
    for (every delivery delivered or dead); returns events deleted."""
    waiting = exists().where(DELIVERY.c.event_id == EVENT.c.id, DELIVERY.c.status == PENDING)
    ids = list(
        conn.execute(
            select(EVENT.c.id).where(EVENT.c.created_at < before, ~waiting).limit(limit)
        ).scalars()
    )
    if ids:
        conn.execute(delete(DELIVERY).where(DELIVERY.c.event_id.in_(ids)))
        conn.execute(delete(EVENT).where(EVENT.c.id.in_(ids)))
    return len(ids)
