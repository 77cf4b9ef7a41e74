"""Engine construction: one place that knows each backend's connection quirks."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import make_url

# A pooled connection idle this long is pinged before use. Pinging on every checkout (the
# pool's pre_ping) costs a round trip per consumer batch; a connection used a moment ago that
# has died since fails its first statement instead, which the store reports as
# StoreUnavailable and the consumer retries (the pool is invalidated on a disconnect).
IDLE_PING_SECONDS = 5.0


def create_db_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> Engine:
    """An engine tuned per backend: WAL SQLite, utf8mb4 and READ COMMITTED MariaDB, a ping
    after idle."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {"echo": echo}
    if backend == "sqlite":
        # One writer at a time: wait for the lock instead of failing at once.
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    else:
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)
        kwargs["connect_args"] = _network_connect_args(backend)
    if backend in ("mysql", "mariadb"):
        # PostgreSQL's isolation: every write path locks the rows it changes (FOR UPDATE,
        # in id order) and needs no snapshot; InnoDB's default REPEATABLE READ adds gap locks
        # to those reads, which deadlock concurrent registrations and receipts
        # (tests/integration/db/test_counts.py measures it).
        kwargs["isolation_level"] = "READ COMMITTED"
        if "charset" not in parsed.query:
            parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    engine = create_engine(parsed, **kwargs)
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    _ping_after_idle(engine, IDLE_PING_SECONDS)
    return engine


def _ping_after_idle(engine: Engine, idle_seconds: float) -> None:
    """Pre-ping only connections idle for ``idle_seconds``; a failed ping makes the pool
    discard the connection and check out another (SQLAlchemy's DisconnectionError protocol).
    """
    dialect = engine.dialect

    def checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["receiptd_idle_since"] = time.monotonic()

    def checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("receiptd_idle_since")
        if since is None or time.monotonic() - since < idle_seconds:
            return  # fresh connection, or used a moment ago
        try:
            dialect.do_ping(dbapi_conn)
        except Exception as error:
            raise exc.DisconnectionError(f"idle connection failed its ping: {error}") from error

    event.listen(engine, "checkin", checkin)
    event.listen(engine, "checkout", checkout)


def _network_connect_args(backend: str) -> dict[str, Any]:
    # Bounded connects so a dead database shows up as an error, not a hang.
    if backend == "postgresql":
        return {"connect_timeout": 5}
    return {"connect_timeout": 5, "read_timeout": 30, "write_timeout": 30}


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
