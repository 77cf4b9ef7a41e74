"""Send counts at any size: sends per (provider, account, status, settled_by), exact.

Counting ``sms_send`` reads every index entry: 835 ms at 10 M rows (docs/scale.md). Instead
every write path of ``sms_send`` adds what it changed to ``sms_send_count`` in the transaction
that changes it: registration ``+1`` pending, a settlement ``-1`` of the old key and ``+1`` of
the new one, a prune ``-1`` of each deleted row's key. Rows are inserted, never updated, so
writers never wait for each other on a hot counter row (RapidPro's squashed counts do the
same); :func:`squash` periodically folds them into one row per key. ``SUM(sends)`` per key is
therefore exact for what ``sms_send`` holds at any committed moment.

A key is (provider, account, status, settled_by), ``settled_by`` ``''`` while pending.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select

from receiptd.db.locks import take_write_lock
from receiptd.db.models import SEND, SEND_COUNT

Key = tuple[str, str, str, str]  # (provider, account, status, settled_by or "")
SQUASH_BATCH = 10_000  # delta rows folded per squash transaction


def key_of(row: Mapping[str, Any]) -> Key:
    """The count key of an ``sms_send`` row (a mapping of its columns)."""
    return (row["provider"], row["account"], row["status"], row["settled_by"] or "")


def record(conn: Connection, deltas: Mapping[Key, int]) -> None:
    """Add these changes (key → sends added, negative for removed) in ``conn``'s transaction."""
    rows = [
        {"provider": k[0], "account": k[1], "status": k[2], "settled_by": k[3], "sends": n}
        for k, n in sorted(deltas.items())
        if n
    ]
    if rows:
        conn.execute(insert(SEND_COUNT), rows)


def moved(changes: Iterable[tuple[Key, Key]]) -> Counter[Key]:
    """The deltas of sends moving from one key to another (a settlement: old → new)."""
    deltas: Counter[Key] = Counter()
    for old, new in changes:
        deltas[old] -= 1
        deltas[new] += 1
    return deltas


def totals(conn: Connection, account: str | None = None) -> dict[Key, int]:
    """Sends per key (keys with none left out); ``account``'s alone when given."""
    c = SEND_COUNT.c
    columns = (c.provider, c.account, c.status, c.settled_by)
    query = select(*columns, func.sum(c.sends).label("n")).group_by(*columns)
    if account is not None:
        query = query.where(c.account == account)
    out: dict[Key, int] = {}
    for row in conn.execute(query):
        if int(row.n):
            out[row.provider, row.account, row.status, row.settled_by] = int(row.n)
    return out


def recount(conn: Connection) -> int:
    """Count ``sms_send`` afresh: one row per key, replacing every delta (what migration 0007
    does once; for rows written around the write paths, e.g. a bulk load). Returns the keys.
    Writers must be stopped meanwhile: their deltas would be counted twice or lost."""
    take_write_lock(conn)
    conn.execute(delete(SEND_COUNT))
    c = SEND.c
    settled_by = func.coalesce(c.settled_by, "")
    query = select(c.provider, c.account, c.status, settled_by, func.count()).group_by(
        c.provider, c.account, c.status, settled_by
    )
    rows = {(p, a, s, by): int(n) for p, a, s, by, n in conn.execute(query)}
    record(conn, rows)
    return len(rows)


def squash(conn: Connection, limit: int = SQUASH_BATCH) -> int:
    """Fold up to ``limit`` delta rows into one row per key, in ``conn``'s transaction; returns
    the rows folded (0: nothing to do). The rows are locked first, so two replicas squashing at
    once never fold the same rows twice (the second waits, then finds them gone)."""
    take_write_lock(conn)
    query = select(SEND_COUNT).order_by(SEND_COUNT.c.id).limit(limit).with_for_update()
    rows = [dict(r._mapping) for r in conn.execute(query)]
    sums: Counter[Key] = Counter()
    for row in rows:
        sums[row["provider"], row["account"], row["status"], row["settled_by"]] += row["sends"]
    if len(rows) <= len([n for n in sums.values() if n]):
        return 0  # already one row per key: nothing to fold
    ids = [row["id"] for row in rows]
    for start in range(0, len(ids), 1000):
        conn.execute(delete(SEND_COUNT).where(SEND_COUNT.c.id.in_(ids[start : start + 1000])))
    record(conn, sums)
    return len(rows)
