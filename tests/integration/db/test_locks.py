"""Cross-replica locks on PostgreSQL and MariaDB: one holder per database, not per server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from receiptd.db import locks
from receiptd.db.engine import create_db_engine
from tests.conftest import create_server_database, drop_server_database, unavailable

SERVER_BACKENDS = ("postgresql", "mariadb")


@pytest.fixture(params=SERVER_BACKENDS)
def two_databases(request: pytest.FixtureRequest) -> Iterator[tuple[sa.Engine, sa.Engine]]:
    """Two scratch databases on one server (two deployments sharing a database server)."""
    backend: str = request.param
    try:
        urls = [create_server_database(backend) for _ in range(2)]
    except sa.exc.OperationalError as exc:
        unavailable(backend, exc)
    engines = tuple(create_db_engine(url) for url in urls)
    try:
        yield engines[0], engines[1]
    finally:
        for engine, url in zip(engines, urls, strict=True):
            engine.dispose()
            drop_server_database(backend, url)


def test_a_held_lock_keeps_a_second_holder_of_the_same_database_off(
    two_databases: tuple[sa.Engine, sa.Engine],
) -> None:
    one, _ = two_databases
    with locks.held(one, locks.PRUNE, wait=False) as first:
        with locks.held(one, locks.PRUNE, wait=False) as second:
            assert first and not second
        with locks.held(one, locks.MIGRATE, wait=False) as other_name:
            assert other_name
    with locks.held(one, locks.PRUNE, wait=False) as again:
        assert again  # released with the block


def test_a_waiting_holder_is_granted_and_releases_the_lock_with_its_block(
    two_databases: tuple[sa.Engine, sa.Engine],
) -> None:
    """The waiting form (``--migrate``): granted, and free again after the block, even though
    the pool keeps the connection that held it open."""
    one, _ = two_databases
    with locks.held(one, locks.MIGRATE) as first:
        assert first
        with locks.held(one, locks.MIGRATE, wait=False) as while_held:
            assert not while_held
    with locks.held(one, locks.MIGRATE, wait=False) as after:
        assert after


def test_a_lock_in_one_database_does_not_hold_another_on_the_same_server(
    two_databases: tuple[sa.Engine, sa.Engine],
) -> None:
    one, two = two_databases
    with (
        locks.held(one, locks.PRUNE, wait=False) as first,
        locks.held(two, locks.PRUNE, wait=False) as elsewhere,
    ):
        assert first and elsewhere


def test_sqlite_always_grants_a_lock(tmp_path: Path) -> None:
    """SQLite has one writer already: a second holder is not kept off."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'l.db'}")
    try:
        with (
            locks.held(engine, locks.PRUNE, wait=False) as first,
            locks.held(engine, locks.PRUNE, wait=False) as second,
        ):
            assert first and second
    finally:
        engine.dispose()


def test_take_write_lock_holds_sqlites_write_lock_until_commit(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
        other = sa.create_engine(f"sqlite:///{tmp_path / 'w.db'}", connect_args={"timeout": 0})
        with engine.begin() as conn:
            locks.take_write_lock(conn)
            locks.take_write_lock(conn)  # already in a transaction: nothing more
            with pytest.raises(sa.exc.OperationalError, match="locked"), other.begin() as o:
                o.exec_driver_sql("INSERT INTO t VALUES (1)")
        with other.begin() as o:
            o.exec_driver_sql("INSERT INTO t VALUES (2)")  # released with the commit
        other.dispose()
    finally:
        engine.dispose()
