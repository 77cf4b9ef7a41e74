"""Engine construction (receiptd.db.engine): per-backend settings and the ping after idle."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from receiptd.db import engine as engines
from tests.conftest import SERVERS


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    eng = engines.create_db_engine(f"sqlite:///{tmp_path / 'e.db'}")
    try:
        with eng.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    finally:
        eng.dispose()


def test_mariadb_gets_utf8mb4_unless_the_url_names_a_charset() -> None:
    url = "mysql+pymysql://root@127.0.0.1:3306/test"
    plain = engines.create_db_engine(url)  # constructing an engine does not connect
    chosen = engines.create_db_engine(url + "?charset=latin1")
    try:
        assert plain.url.query["charset"] == "utf8mb4"
        assert chosen.url.query["charset"] == "latin1"
        assert plain.pool.size() == 10  # type: ignore[attr-defined]
    finally:
        plain.dispose()
        chosen.dispose()


def test_an_idle_connection_that_died_is_replaced_before_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PostgreSQL: the server ends a pooled connection while it is idle; the next checkout pings
    it (idle long enough), discards it and hands out a fresh one: the caller sees no error."""
    monkeypatch.setattr(engines, "IDLE_PING_SECONDS", 0.0)
    eng = engines.create_db_engine(SERVERS["postgresql"], pool_size=1)
    admin = sa.create_engine(SERVERS["postgresql"], isolation_level="AUTOCOMMIT")
    try:
        try:
            with eng.connect() as conn:
                first = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        except sa.exc.OperationalError as exc:
            pytest.skip(f"postgresql unavailable: {exc}")
        with admin.connect() as other:
            other.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": first})
        with eng.connect() as conn:
            assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() != first
    finally:
        eng.dispose()
        admin.dispose()
