"""The event outbox in SQL: events written with the change they announce, one delivery row per
interested endpoint, and what operators list, show and replay (``receiptd events``).

Settling a send writes its event through :class:`Outbox` (:func:`receiptd.db.settle.settle_sends`);
storing replies calls :func:`replies_stored`. Both run inside the caller's transaction, so an
event row exists if and only if its change committed. The dispatcher claims and records the
deliveries through ``ports.EventOutbox`` (:mod:`receiptd.db.deliveries`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, String, and_, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql

from receiptd import events
from receiptd.db import upsert
from receiptd.db.models import DELIVERY, EVENT, INBOUND

_CHUNK = 500
_NOTIFY_CHANNEL = "receiptd_events"
_IDS = postgresql.ARRAY(String())


@dataclass(frozen=True, slots=True)
class Route:
    """One webhook endpoint as the outbox sees it: a name, the event types it wants and the
    accounts whose events it wants (each empty: all)."""

    endpoint: str
    types: frozenset[str] = frozenset()
    accounts: frozenset[str] = frozenset()

    def wants(self, event_type: str, account: str) -> bool:
        return (not self.types or event_type in self.types) and (
            not self.accounts or account in self.accounts
        )


@dataclass(frozen=True, slots=True)
class Outbox:
    """Where events go: one delivery row per interested endpoint. ``show_phone_numbers``
    decides whether payloads carry full numbers (default masked, like the logs)."""

    routes: tuple[Route, ...]
    show_phone_numbers: bool = False
    notify: bool = False  # PostgreSQL: NOTIFY receiptd_events, '<event id>' (sent on commit)

    def emit(self, conn: Connection, new: Sequence[events.Event], now: datetime) -> None:
        if not new:
            return
        # A short statement executed per row (psycopg pipelines them; prepared once): the
        # cheapest in CPU. A multi-row VALUES list is re-parsed by psycopg on every execution
        # (too long for its cache), and the unnest-array path of upsert.py spends more on
        # quoting JSON inside a text array literal than the rest of the write.
        rows = [
            {
                "id": e.id,
                "type": e.type.value,
                "account": e.account,
                "send_id": e.send_id,
                "inbound_id": e.inbound_id,
                "created_at": e.created_at,
                "payload": e.body,
            }
            for e in new
        ]
        conn.execute(_INSERT_EVENTS, rows)
        deliveries = [
            _delivery_row(e.id, route.endpoint, now)
            for e in new
            for route in self.routes
            if route.wants(e.type.value, e.account)
        ]
        if deliveries:
            conn.execute(_INSERT_DELIVERIES, deliveries)
        if self.notify and conn.dialect.name == "postgresql":
            conn.execute(
                select(func.pg_notify(_NOTIFY_CHANNEL, func.unnest(bindparam("ids", type_=_IDS)))),
                {"ids": [e.id for e in new]},
            )


_INSERT_EVENTS = insert(EVENT)
_INSERT_DELIVERIES = insert(DELIVERY)


def _delivery_row(event_id: str, endpoint: str, now: datetime) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "endpoint": endpoint,
        "status": events.DeliveryStatus.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
        "pending_since": now,
    }


def replies_stored(
    conn: Connection, inbound_ids: Sequence[int], now: datetime, outbox: Outbox | None
) -> None:
    """One ``reply.received`` event per newly stored ``sms_inbound`` row."""
    if outbox is None or not inbound_ids:
        return
    rows = conn.execute(
        select(INBOUND).where(INBOUND.c.id.in_(list(inbound_ids))).order_by(INBOUND.c.id)
    ).mappings()
    outbox.emit(
        conn, [events.reply_received(dict(r), now, outbox.show_phone_numbers) for r in rows], now
    )


# --- operators (receiptd events) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryView:
    event_id: str
    type: str
    account: str
    created_at: datetime
    endpoint: str | None
    status: str | None
    attempts: int | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None


def deliveries(
    conn: Connection,
    since: datetime | None = None,
    endpoint: str | None = None,
    status: str | None = None,
    event_id: str | None = None,
    limit: int = 100,
    account: str | None = None,
) -> list[DeliveryView]:
    """Events with their deliveries (an event no endpoint wanted is listed once, bare),
    newest first."""
    join_on = DELIVERY.c.event_id == EVENT.c.id
    if endpoint is not None:
        join_on = and_(join_on, DELIVERY.c.endpoint == endpoint)
    query = select(
        EVENT.c.id.label("event_id"),
        EVENT.c.type,
        EVENT.c.account,
        EVENT.c.created_at,
        DELIVERY.c.endpoint,
        DELIVERY.c.status,
        DELIVERY.c.attempts,
        DELIVERY.c.last_attempt_at,
        DELIVERY.c.last_status_code,
        DELIVERY.c.last_error,
        DELIVERY.c.delivered_at,
    ).select_from(EVENT.outerjoin(DELIVERY, join_on))
    if since is not None:
        query = query.where(EVENT.c.created_at >= since)
    if endpoint is not None or status is not None:
        query = query.where(DELIVERY.c.id.is_not(None))
    if status is not None:
        query = query.where(DELIVERY.c.status == status)
    if event_id is not None:
        query = query.where(EVENT.c.id == event_id)
    if account is not None:
        query = query.where(EVENT.c.account == account)
    query = query.order_by(EVENT.c.created_at.desc(), EVENT.c.id, DELIVERY.c.endpoint)
    return [DeliveryView(**row._asdict()) for row in conn.execute(query.limit(limit))]


def payload(conn: Connection, event_id: str) -> str | None:
    value = conn.execute(select(EVENT.c.payload).where(EVENT.c.id == event_id)).scalar()
    return None if value is None else str(value)


def replay(
    conn: Connection,
    routes: Iterable[Route],
    now: datetime,
    event_ids: Sequence[str] = (),
    since: datetime | None = None,
) -> int:
    """Deliver these events again to these endpoints (each only the types and accounts it
    wants), from
    the first attempt with a fresh retry period; an endpoint added since gets its first
    delivery. Returns deliveries scheduled."""
    scheduled = 0
    for route in routes:
        query = select(EVENT.c.id)
        if event_ids:
            query = query.where(EVENT.c.id.in_(list(event_ids)))
        if since is not None:
            query = query.where(EVENT.c.created_at >= since)
        if route.types:
            query = query.where(EVENT.c.type.in_(sorted(route.types)))
        if route.accounts:
            query = query.where(EVENT.c.account.in_(sorted(route.accounts)))
        ids = list(conn.execute(query).scalars())
        for start in range(0, len(ids), _CHUNK):
            scheduled += _reschedule(conn, ids[start : start + _CHUNK], route.endpoint, now)
    return scheduled


def _reschedule(conn: Connection, ids: list[str], endpoint: str, now: datetime) -> int:
    rows = [_delivery_row(i, endpoint, now) for i in ids]
    upsert.insert_ignore(conn, DELIVERY, rows, ("event_id", "endpoint"))
    result = conn.execute(
        update(DELIVERY)
        .where(DELIVERY.c.event_id.in_(ids), DELIVERY.c.endpoint == endpoint)
        .values(
            status=events.DeliveryStatus.PENDING.value,
            attempts=0,
            next_attempt_at=now,
            pending_since=now,
            delivered_at=None,
            last_error=None,
        )
    )
    return max(int(result.rowcount), 0)
