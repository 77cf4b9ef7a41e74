"""The one place a send settles: pending → final, or expired → delivered/failed.

Every settle path (receipts in :mod:`receiptd.db.store`, lookups and window expiry in
:mod:`receiptd.db.sends`, registration meeting a stored receipt) builds its
:class:`SendChange` list and calls :func:`settle_sends` inside its own transaction. It adds the
moves between count keys (:mod:`receiptd.db.counts`) and, with an outbox, one event per send it
actually changed (:mod:`receiptd.db.outbox`), so a count delta and an event row exist if and
only if their change committed.

Finding the rows a settling UPDATE changed: MariaDB has no ``UPDATE ... RETURNING``, so one
path serves every backend — the open rows are read ``FOR UPDATE`` first (SQLite: under
the database's write lock, taken at that point; :func:`receiptd.db.locks.take_write_lock`),
then updated by id. While the rows are locked nobody else can settle them, so the rows read
are exactly the rows changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, bindparam, select, update

from receiptd import domain, events
from receiptd.db import counts
from receiptd.db.locks import take_write_lock
from receiptd.db.lookup import KeyLookup
from receiptd.db.models import SEND, claim_released
from receiptd.db.outbox import Outbox

PENDING = domain.SendStatus.PENDING.value
# Sends a settlement may still change: pending ones, and expired ones (receiptd's own verdict,
# which a later delivered/failed from the provider overturns; ``domain.next_status``).
OPEN = (PENDING, domain.SendStatus.EXPIRED.value)
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class SendChange:
    """A send reaching a final status (``domain.next_status`` decides whether it may)."""

    send_id: int
    status: domain.SendStatus
    settled_by: domain.SettledBy
    err_code: str | None = None
    err_msg: str | None = None


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
    delivered/failed; delivered/failed never change), add the moves to the send counts
    (:mod:`receiptd.db.counts`) and, with an outbox, write one event per send actually
    changed. Returns sends changed.

    The single place a send settles: a new settle path builds its ``SendChange`` list and
    calls this, inside its own transaction. ``locked``: the open rows, already read with
    :func:`lock_open` in this transaction (saves reading them twice)."""
    changes = [c for c in changes if c.status.is_final]
    if not changes:
        return 0
    if locked is None:
        locked = lock_ids(conn, sorted({c.send_id for c in changes}))
    todo = [c for c in changes if c.send_id in locked and _changes(locked[c.send_id], c)]
    if not todo:
        return 0
    first: dict[int, SendChange] = {}
    for c in todo:  # one change per send: the first, as the status guard would decide
        first.setdefault(c.send_id, c)
    todo = list(first.values())
    _update(conn, todo, now, count_check)
    after = {c.send_id: _after(locked[c.send_id], c) for c in todo}
    # The rows are locked: exactly these changed, from exactly these keys (receiptd.db.counts).
    counts.record(
        conn, counts.moved((counts.key_of(locked[i]), counts.key_of(a)) for i, a in after.items())
    )
    if outbox is not None:
        settled = [
            events.send_settled(after[c.send_id], now, outbox.show_phone_numbers) for c in todo
        ]
        outbox.emit(conn, settled, now)
    return len(todo)


class OpenSends:
    """The statements of :func:`lock_open` for one key lookup, built once: the consumer
    locks by the same key every batch and binds only the values. (Building ``select(SEND)``
    and its conditions per batch cost about half of a receipt batch's store time.)"""

    def __init__(self, lookup: KeyLookup) -> None:
        self.lookup = lookup
        self.ids = select(SEND.c.id).where(lookup.lists_condition())  # MariaDB, see lock_open
        self.rows = {name: _locking(lookup.rows_for(name)) for name in ("postgresql", "sqlite")}


def lock_open(
    conn: Connection,
    reads: OpenSends,
    fixed: Mapping[str, Any],
    keys: Iterable[tuple[str, ...]],
) -> dict[int, Mapping[str, Any]]:
    """The open sends with these ``keys`` (:class:`receiptd.db.lookup.KeyLookup`) by id,
    locked until commit, in id order: concurrent writers lock in the same order and cannot
    deadlock on each other.

    PostgreSQL (and SQLite, under its write lock) locks the rows of ``SELECT … ORDER BY id
    FOR UPDATE`` in that order, after the sort. InnoDB locks rows in the order it scans the
    index the condition uses (e.g. the unique key's provider, account, matched_by, biz_id),
    which would deadlock with a writer locking by id: there the rows are found by a plain read
    first, then locked by primary key (:func:`lock_ids`)."""
    params = reads.lookup.params(conn, fixed, keys)
    if conn.dialect.name in ("mysql", "mariadb"):
        return lock_ids(conn, sorted(conn.execute(reads.ids, params).scalars()))
    return _locked(conn, reads.rows[conn.dialect.name], params)


def lock_ids(conn: Connection, ids: list[int]) -> dict[int, Mapping[str, Any]]:
    """:func:`lock_open` over sorted ``ids``, a bounded IN list at a time. A transaction that
    will change other rows of these too locks them all here first, in one id order."""
    rows: dict[int, Mapping[str, Any]] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = select(SEND).where(SEND.c.id.in_(ids[start : start + _CHUNK]))
        rows.update(_locked(conn, _locking(chunk)))
    return rows


def _locked(
    conn: Connection, statement: Any, params: Mapping[str, Any] | None = None
) -> dict[int, Mapping[str, Any]]:
    """The open rows of a locking read. Every row read is locked, open or not: the status
    condition stays out of the SQL, where PostgreSQL could take it as the index to scan
    (``status``, …) when its statistics say few sends are open (receiptd.db.lookup)."""
    take_write_lock(conn)
    result = conn.execute(statement, params)
    names = list(result.keys())  # once: dict(RowMapping) per row was ~4 µs a receipt
    rows = (dict(zip(names, row, strict=True)) for row in result)
    return {r["id"]: r for r in rows if r["status"] in OPEN}


def _locking(query: Select[Any]) -> Select[Any]:
    return query.order_by(SEND.c.id).with_for_update()


def _changes(row: Mapping[str, Any], change: SendChange) -> bool:
    current = domain.SendStatus(row["status"])
    return domain.next_status(current, change.status) is not current


def _after(row: Mapping[str, Any], change: SendChange) -> dict[str, Any]:
    after = dict(row)
    after.update(
        status=change.status.value,
        settled_by=change.settled_by.value,
        err_code=change.err_code,
        err_msg=_err_msg(change),
    )
    return after


def _err_msg(change: SendChange) -> str | None:
    return (change.err_msg or None) and change.err_msg[:512]


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
    # By primary key alone: the rows are locked and their statuses checked
    # (``domain.next_status`` in settle_sends), so a status condition here could never be
    # false, and PostgreSQL would take it as the index to scan (``status``, …) when its
    # statistics say few sends are open, reading every open send (receiptd.db.lookup).
    return update(SEND).where(SEND.c.id.in_(bindparam("b_ids", expanding=True))).values(**values)


_SETTLE = {flag: _settle_statement(flag) for flag in (False, True)}


def _update(conn: Connection, changes: Sequence[SendChange], now: datetime, check: bool) -> int:
    """One UPDATE per distinct outcome (a batch of receipts has few: delivered, or a failure
    code or two), not one per send, of locked sends each changed once (settle_sends keeps
    a send's first change). Returns rows changed."""
    groups: dict[tuple[str, str, str | None, str | None], list[int]] = {}
    for c in changes:
        key = (c.status.value, c.settled_by.value, c.err_code, _err_msg(c))
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
