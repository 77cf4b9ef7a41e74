"""Cross-replica locks: one holder at a time per name, whatever the replica count.

PostgreSQL session advisory locks and MariaDB/MySQL ``GET_LOCK`` are held by one dedicated
connection for the duration of the block and released with it (also when the process dies).
SQLite has a single writer already: the lock is always granted.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine, TextClause, text


@dataclass(frozen=True, slots=True)
class Lock:
    name: str  # MariaDB/MySQL GET_LOCK name
    key: int  # PostgreSQL advisory lock key (bigint)


MIGRATE = Lock("receiptd_migrate", 0x72656365)  # "rece"
PRUNE = Lock("receiptd_prune", 0x7072756E)  # "prun"


@contextmanager
def held(engine: Engine, lock: Lock, *, wait: bool = True) -> Iterator[bool]:
    """Hold ``lock`` for the block. ``wait=False`` does not queue: the block gets False at
    once when another replica holds it (the caller then skips its work)."""
    backend = engine.dialect.name
    if backend == "sqlite":  # a single writer already
        yield True
        return
    with engine.connect() as conn:
        got = bool(conn.execute(*_acquire(backend, lock, wait)).scalar())
        conn.commit()
        try:
            yield got
        finally:
            if got:
                conn.execute(*_release(backend, lock))
                conn.commit()


def _acquire(backend: str, lock: Lock, wait: bool) -> tuple[TextClause, dict[str, object]]:
    if backend == "postgresql":
        sql = "SELECT pg_advisory_lock(:k) IS NULL" if wait else "SELECT pg_try_advisory_lock(:k)"
        return text(sql), {"k": lock.key}  # pg_advisory_lock returns void (NULL): granted
    return text("SELECT GET_LOCK(:n, :t)"), {"n": lock.name, "t": 300 if wait else 0}


def _release(backend: str, lock: Lock) -> tuple[TextClause, dict[str, object]]:
    if backend == "postgresql":
        return text("SELECT pg_advisory_unlock(:k)"), {"k": lock.key}
    return text("SELECT RELEASE_LOCK(:n)"), {"n": lock.name}
