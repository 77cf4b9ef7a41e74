"""The event outbox in SQL: events written with the change they announce, and their deliveries.

Every path that settles a send (pending → final, or expired → delivered/failed) calls
:func:`settle_sends`; the one that
stores replies calls :func:`replies_stored`. Both run inside the caller's transaction, so an
event row exists if and only if its change committed.

Finding the rows a settling UPDATE changed: MariaDB has no ``UPDATE ... RETURNING``, so one
path serves every backend — the open rows are read ``FOR UPDATE`` first (SQLite: under
the database's write lock, taken at that point), then updated by id. While the rows are
locked nobody else can settle them, so the rows read are exactly the rows changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    String,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql

from receiptd import domain, events
from receiptd.db import upsert
from receiptd.db.models import DELIVERY, EVENT, INBOUND, SEND, claim_released

PENDING = domain.SendStatus.PENDING.value
# Sends a settlement may still change: pending ones, and expired ones (receiptd's own verdict,
# which a later delivered/failed from the provider overturns; ``domain.next_status``).
OPEN = (PENDING, domain.SendStatus.EXPIRED.value)
_CHUNK = 500
_NOTIFY_CHANNEL = "receiptd_events"
_IDS = postgresql.ARRAY(String())


@dataclass(frozen=True, slots=True)
class Route:
    """One webhook endpoint as the outbox sees it: a name, and the event types it wants
    (empty: all)."""

    endpoint: str
    types: frozenset[str] = frozenset()

    def wants(self, event_type: str) -> bool:
        return not self.types or event_type in self.types


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
            if route.wants(e.type.value)
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


def take_write_lock(conn: Connection) -> None:
    """SQLite: take the database's write lock now, so what is read next stays true until
    commit (pysqlite begins a transaction only at the first write). Elsewhere row locks
    (``FOR UPDATE``) do that job."""
    if conn.dialect.name != "sqlite":
        return
    if not conn.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
        conn.exec_driver_sql("BEGIN IMMEDIATE")


# --- the one call every settle path makes -----------------------------------------------------


def settleable(send: Any, new_status: Any) -> Any:
    """SQL twin of ``domain.next_status``: a row may take ``new_status`` when it is pending,
    or expired (receiptd's verdict) and the new status is the provider's delivered/failed."""
    conclusive = or_(*(new_status == s.value for s in domain.SendStatus if s.is_conclusive))
    return or_(
        send.c.status == PENDING,
        and_(send.c.status == domain.SendStatus.EXPIRED.value, conclusive),
    )


@dataclass(frozen=True, slots=True)
class SendChange:
    """A send reaching a final status (``domain.next_status`` decides whether it may)."""

    send_id: int
    status: domain.SendStatus
    settled_by: domain.SettledBy
    err_code: str | None = None
    err_msg: str | None = None


def _settle_statement(count_check: bool) -> Any:
    values: dict[str, Any] = {
        "status": bindparam("b_status"),
        "settled_by": bindparam("b_by"),
        "err_code": bindparam("b_err_code"),
        "err_msg": bindparam("b_err_msg"),
        "settled_at": bindparam("b_now"),
        **claim_released(bindparam("b_now")),
    }
    if count_check:  # a status lookup was one more check of this send
        values["check_count"] = SEND.c.check_count + 1
    return (
        update(SEND)
        .where(
            SEND.c.id.in_(bindparam("b_ids", expanding=True)),
            settleable(SEND, bindparam("b_status")),
        )
        .values(**values)
    )


_SETTLE = {flag: _settle_statement(flag) for flag in (False, True)}


def _update(conn: Connection, changes: Sequence[SendChange], now: datetime, check: bool) -> int:
    """One UPDATE per distinct outcome (a batch of receipts has few: delivered, or a failure
    code or two), not one per send. A send changed twice keeps the first change (the
    status guard refuses the second). Returns rows changed."""
    groups: dict[tuple[str, str, str | None, str | None], list[int]] = {}
    for c in changes:
        err_msg = (c.err_msg or None) and c.err_msg[:512]
        key = (c.status.value, c.settled_by.value, c.err_code, err_msg)
        groups.setdefault(key, []).append(c.send_id)
    changed = 0
    for (status, by, err_code, err_msg), ids in groups.items():
        for start in range(0, len(ids), _CHUNK):
            params = {
                "b_ids": ids[start : start + _CHUNK],
                "b_status": status,
                "b_by": by,
                "b_err_code": err_code,
                "b_err_msg": err_msg,
                "b_now": now,
            }
            changed += max(int(conn.execute(_SETTLE[check], params).rowcount), 0)
    return changed


def settle_sends(
    conn: Connection,
    changes: Sequence[SendChange],
    now: datetime,
    outbox: Outbox | None,
    *,
    count_check: bool = False,
    locked: Mapping[int, Mapping[str, Any]] | None = None,
) -> int:
    """Settle these sends as ``domain.next_status`` allows (pending → final; expired →
    delivered/failed; delivered/failed never change) and, with an outbox, write one event per
    send actually changed. Returns sends changed.

    The single place a send settles: a new settle path builds its ``SendChange`` list and
    calls this, inside its own transaction. ``locked``: the open rows, already read with
    :func:`lock_open` in this transaction (saves reading them twice)."""
    changes = [c for c in changes if c.status.is_final]
    if not changes:
        return 0
    if outbox is None:  # no events: the status guard alone keeps settling exact
        return _update(conn, changes, now, count_check)
    if locked is None:
        locked = _lock_open(conn, sorted({c.send_id for c in changes}))
    todo = [c for c in changes if c.send_id in locked and _changes(locked[c.send_id], c)]
    if not todo:
        return 0
    first: dict[int, SendChange] = {}
    for c in todo:  # one change per send: the first, as the status guard would decide
        first.setdefault(c.send_id, c)
    todo = list(first.values())
    _update(conn, todo, now, count_check)
    settled = [
        events.send_settled(_after(locked[c.send_id], c), now, outbox.show_phone_numbers)
        for c in todo
    ]
    outbox.emit(conn, settled, now)
    return len(todo)


def _changes(row: Mapping[str, Any], change: SendChange) -> bool:
    current = domain.SendStatus(row["status"])
    return domain.next_status(current, change.status) is not current


def lock_open(conn: Connection, where: Any) -> dict[int, Mapping[str, Any]]:
    """The open sends matching ``where``, locked until commit (see the module's note)."""
    take_write_lock(conn)
    query = select(SEND).where(where, SEND.c.status.in_(OPEN)).order_by(SEND.c.id)
    return {r["id"]: dict(r) for r in conn.execute(query.with_for_update()).mappings()}


def _lock_open(conn: Connection, ids: list[int]) -> dict[int, Mapping[str, Any]]:
    """The still-open sends among ``ids``, locked until commit (in id order: concurrent
    writers lock in the same order and cannot deadlock on each other)."""
    take_write_lock(conn)
    rows: dict[int, Mapping[str, Any]] = {}
    for start in range(0, len(ids), _CHUNK):
        query = (
            select(SEND)
            .where(SEND.c.id.in_(ids[start : start + _CHUNK]), SEND.c.status.in_(OPEN))
            .order_by(SEND.c.id)
            .with_for_update()
        )
        rows.update({r.id: r for r in conn.execute(query).mappings()})
    return rows


def _after(row: Mapping[str, Any], change: SendChange) -> dict[str, Any]:
    after = dict(row)
    after.update(
        status=change.status.value,
        settled_by=change.settled_by.value,
        err_code=change.err_code,
        err_msg=(change.err_msg or None) and change.err_msg[:512],
    )
    return after


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


# --- deliveries ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery this worker holds until ``lease`` ends: POST it, then record the outcome."""

    delivery_id: int
    event_id: str
    event_type: str
    created_at: datetime
    attempts: int
    pending_since: datetime
    body: str


def claim(
    conn: Connection, endpoint: str, now: datetime, limit: int, lease: timedelta
) -> list[Claimed]:
    """Claim up to ``limit`` due deliveries of one endpoint: ``FOR UPDATE SKIP LOCKED`` keeps
    concurrent replicas on different rows (PostgreSQL; MariaDB ≥ 10.6), and pushing the due
    time to the lease's end makes them invisible to other claims after commit. A worker that
    dies holding a claim leaves it due again when the lease ends (at-least-once)."""
    take_write_lock(conn)
    due = (
        select(DELIVERY.c.id)
        .where(
            DELIVERY.c.endpoint == endpoint,
            DELIVERY.c.status == events.DeliveryStatus.PENDING.value,
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
        )
        .join(EVENT, EVENT.c.id == DELIVERY.c.event_id)
        .where(DELIVERY.c.id.in_(ids))
        .order_by(DELIVERY.c.next_attempt_at, DELIVERY.c.id)
    )
    return [Claimed(*row) for row in conn.execute(query)]


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one POST of a claimed delivery came to, and what to do next."""

    delivery_id: int
    result: events.DeliveryStatus  # delivered, dead, or pending (retry at ``next_attempt_at``)
    status_code: int | None
    error: str | None
    next_attempt_at: datetime | None = None


_RECORD = (
    update(DELIVERY)
    .where(
        DELIVERY.c.id == bindparam("b_id"),
        DELIVERY.c.status == events.DeliveryStatus.PENDING.value,
    )
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


def record(conn: Connection, attempts: Sequence[Attempt], now: datetime) -> None:
    """Store the outcome of each attempt (a delivery settled meanwhile stays as it is)."""
    if not attempts:
        return
    delivered = events.DeliveryStatus.DELIVERED
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
            .where(
                DELIVERY.c.id.in_(list(delivery_ids)),
                DELIVERY.c.status == events.DeliveryStatus.PENDING.value,
            )
            .values(next_attempt_at=now)
        )


@dataclass(frozen=True, slots=True)
class Backlog:
    pending: int
    oldest: datetime | None  # the oldest pending delivery became due then


def backlog(conn: Connection) -> dict[str, Backlog]:
    """Pending deliveries per endpoint, for the metrics."""
    query = (
        select(DELIVERY.c.endpoint, func.count(), func.min(DELIVERY.c.pending_since))
        .where(DELIVERY.c.status == events.DeliveryStatus.PENDING.value)
        .group_by(DELIVERY.c.endpoint)
    )
    return {row[0]: Backlog(int(row[1]), row[2]) for row in conn.execute(query)}


def prune(conn: Connection, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` events created before ``before`` that no endpoint still waits
    for (every delivery delivered or dead); returns events deleted."""
    waiting = exists().where(
        DELIVERY.c.event_id == EVENT.c.id,
        DELIVERY.c.status == events.DeliveryStatus.PENDING.value,
    )
    ids = list(
        conn.execute(
            select(EVENT.c.id).where(EVENT.c.created_at < before, ~waiting).limit(limit)
        ).scalars()
    )
    if ids:
        conn.execute(delete(DELIVERY).where(DELIVERY.c.event_id.in_(ids)))
        conn.execute(delete(EVENT).where(EVENT.c.id.in_(ids)))
    return len(ids)


# --- operators (receiptd events) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryView:
    event_id: str
    type: str
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
) -> list[DeliveryView]:
    """Events with their deliveries (an event no endpoint wanted is listed once, bare),
    newest first."""
    join_on = DELIVERY.c.event_id == EVENT.c.id
    if endpoint is not None:
        join_on = and_(join_on, DELIVERY.c.endpoint == endpoint)
    query = select(
        EVENT.c.id.label("event_id"),
        EVENT.c.type,
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
    """Deliver these events again to these endpoints (each only the types it wants), from
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
