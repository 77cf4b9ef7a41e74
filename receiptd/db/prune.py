"""Retention in SQL: delete what ``receiptd.db.retention`` allows, in short batches, one replica
at a time.

Each batch is its own transaction: one ``DELETE`` of the ids a ``SELECT id … LIMIT n`` finds
by the table's time index (``subset.id_in``; MariaDB, which refuses ``LIMIT`` in such a
subquery, reads the ids first). Sends are also taken off the send counts in that transaction
(``receiptd.db.counts``). Locks
are held for one batch only, so the consumer's writes and the compensator's claims interleave
with a running prune. A cross-replica lock (``locks.PRUNE``) keeps a second replica's prune
from doing the same work; it does not wait: the other replica skips its run.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, Select, Table, and_, delete, func, select

from receiptd import metrics
from receiptd.db import counts, locks, retention, subset
from receiptd.db.models import SEND, Base
from receiptd.db.store import translate_errors
from receiptd.logs import get_logger

log = get_logger(__name__)
Progress = Callable[[int], None]


@dataclass(slots=True)
class PruneRun:
    """What one run did: rows deleted per table, or skipped (another replica holds the lock)."""

    deleted: dict[str, int] = field(default_factory=dict)
    skipped: bool = False
    stopped: bool = False
    seconds: float = 0.0


class Pruner:
    """Deletes expired rows in bounded batches; ``stop()`` ends a run after its batch."""

    def __init__(
        self,
        engine: Engine,
        batch_size: int = 5000,
        heartbeat: Callable[[], None] = lambda: None,
    ) -> None:
        self.engine = engine
        self.batch_size = batch_size
        self.heartbeat = heartbeat
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Idempotent, thread-safe: a running prune returns after its current batch."""
        self._stopping.set()

    def count(self, cutoffs: Sequence[retention.Cutoff]) -> dict[str, int]:
        """Rows each table would lose now (``prune --dry-run``); 0 for tables kept forever."""
        counts = {}
        with translate_errors(), self.engine.connect() as conn:
            for cut in cutoffs:
                where = _removable(cut)
                if where is None:
                    counts[cut.rule.table] = 0
                    continue
                query = select(func.count()).select_from(_table(cut.rule)).where(where)
                counts[cut.rule.table] = int(conn.execute(query).scalar_one())
        return counts

    def run(
        self, cutoffs: Sequence[retention.Cutoff], progress: Progress | None = None
    ) -> PruneRun:
        """One prune of every table under the cross-replica lock; one log line."""
        started = time.monotonic()
        result = PruneRun()
        with translate_errors(), locks.held(self.engine, locks.PRUNE, wait=False) as got:
            if not got:
                result.skipped = True
                log.info("prune_skipped", reason="another replica is pruning")
                return result
            for cut in cutoffs:
                if self._stopping.is_set():
                    break
                result.deleted[cut.rule.table] = self._prune_table(cut, progress)
        result.stopped = self._stopping.is_set()
        result.seconds = time.monotonic() - started
        log.info(
            "prune_finished",
            deleted=result.deleted,
            rows=sum(result.deleted.values()),
            seconds=round(result.seconds, 3),
            stopped=result.stopped,
            cutoffs={c.rule.table: c.before.isoformat() if c.before else None for c in cutoffs},
        )
        return result

    def _prune_table(self, cut: retention.Cutoff, progress: Progress | None) -> int:
        where = _removable(cut)
        if where is None:
            return 0
        table = _table(cut.rule)
        ids = select(table.c.id).where(where).limit(self.batch_size)
        total = 0
        while not self._stopping.is_set():
            with self.engine.begin() as conn:
                deleted = _delete_batch(conn, table, ids)
            total += deleted
            metrics.PRUNED.labels(cut.rule.table).inc(deleted)
            self.heartbeat()
            if progress is not None and deleted:
                progress(deleted)
            if deleted < self.batch_size:
                break
        return total


def _delete_batch(conn: Connection, table: Table, ids: Select[Any]) -> int:
    """One batch: a single DELETE with the id subquery where the database takes LIMIT there
    (PostgreSQL, SQLite); MariaDB refuses LIMIT in an IN subquery, so it reads the ids first.
    Sends are taken off the send counts (receiptd.db.counts) as they are deleted."""
    if table is SEND:
        return _delete_sends(conn, ids)
    if conn.dialect.name in ("postgresql", "sqlite"):
        result = conn.execute(delete(table).where(subset.id_in(conn, table.c.id, ids)))
        return max(int(result.rowcount), 0)
    batch = list(conn.execute(ids).scalars())
    if batch:
        conn.execute(delete(table).where(table.c.id.in_(batch)))
    return len(batch)


def _delete_sends(conn: Connection, ids: Select[Any]) -> int:
    """Delete a batch of settled sends and take them off the send counts, exactly: ``DELETE …
    RETURNING`` gives each row as it was deleted (an expired send may still have become
    delivered before), in the same one statement on every backend (MariaDB has DELETE …
    RETURNING, not UPDATE … RETURNING; it reads the ids first, as above)."""
    c = SEND.c
    if conn.dialect.name in ("postgresql", "sqlite"):
        where = subset.id_in(conn, c.id, ids)
    else:
        chosen = list(conn.execute(ids).scalars())
        if not chosen:
            return 0
        where = c.id.in_(chosen)
    deleted = delete(SEND).where(where).returning(c.provider, c.account, c.status, c.settled_by)
    rows = conn.execute(deleted).all()
    removed = Counter((p, a, status, by or "") for p, a, status, by in rows)
    counts.record(conn, {key: -n for key, n in removed.items()})
    return len(rows)


def _table(rule: retention.Rule) -> Table:
    return Base.metadata.tables[rule.table]


def _removable(cut: retention.Cutoff) -> Any:
    """The rows this cutoff removes, or None when the table is kept forever."""
    if cut.before is None:
        return None
    table = _table(cut.rule)
    where = table.c[cut.rule.column] < cut.before
    if cut.rule.keep_column is not None:
        where = and_(where, table.c[cut.rule.keep_column] != cut.rule.keep_value)
    return where
