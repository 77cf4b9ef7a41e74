"""Cross-replica locks: one holder at a time per name, whatever the replica count.

PostgreSQL session advisory locks and MariaDB/MySQL ``GET_LOCK`` are held by one dedicated
connection for the duration of the block and released with it (also when the process dies).
SQLite has a single writer already: the lock is always granted.

A lock belongs to the database, not to the server. PostgreSQL's advisory locks are scoped to
the current database; ``GET_LOCK`` names are locked server-wide, and the function's reference
suggests database-specific names (https://mariadb.com/kb/en/get_lock/), so two
deployments — or two test databases — on one MariaDB server would otherwise skip each
other's prune. The name sent is ``<name>.<md5 of DATABASE()>``: one per database, and within
the 64 characters ``GET_LOCK`` accepts whatever the database is called.

Within one transaction, :func:`take_write_lock` makes what SQLite reads next stay true until
commit, the job row locks (``FOR UPDATE``) do on the servers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, TextClause, text


@dataclass(frozen=True, slots=True)
class Lock:
    name: str  # MariaDB/MySQL GET_LOCK name, before it is qualified with the database
    key: int  # PostgreSQL advisory lock key (bigint)


MIGRATE = Lock("receiptd_migrate", 0x72656365)  # "rece"
PRUNE = Lock("receiptd_prune", 0x7072756E)  # "prun"


# The MariaDB/MySQL lock name, qualified with the current database (see the module doc).
_SCOPED = "CONCAT(:n, '.', MD5(DATABASE()))"


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
        # pg_advisory_lock returns void once granted, and a void value is not NULL (``IS
        # NULL`` is false): one row from it in FROM says granted. Reading the void as "not
        # granted" left the lock held, unreleased, by the pooled connection (a second replica
        # starting with --migrate then waited forever).
        sql = "SELECT true FROM pg_advisory_lock(:k)" if wait else "SELECT pg_try_advisory_lock(:k)"
        return text(sql), {"k": lock.key}
    return text(f"SELECT GET_LOCK({_SCOPED}, :t)"), {"n": lock.name, "t": 300 if wait else 0}


def _release(backend: str, lock: Lock) -> tuple[TextClause, dict[str, object]]:
    if backend == "postgresql":
        return text("SELECT pg_advisory_unlock(:k)"), {"k": lock.key}
    return text(f"SELECT RELEASE_LOCK({_SCOPED})"), {"n": lock.name}


def take_write_lock(conn: Connection) -> None:
    """SQLite: take the database's write lock now, so what is read next stays true until
    commit (pysqlite begins a transaction only at the first write). Elsewhere row locks
    (``FOR UPDATE``) do that job."""
    if conn.dialect.name != "sqlite":
        return
    if not conn.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
        conn.exec_driver_sql("BEGIN IMMEDIATE")
