"""Cross-replica locks on PostgreSQL and MariaDB: one holder per database, not per server."""

from __future__ import annotations

from collections.abc import Iterator

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


def test_a_lock_in_one_database_does_not_hold_another_on_the_same_server(
    two_databases: tuple[sa.Engine, sa.Engine],
) -> None:
    one, two = two_databases
    with (
        locks.held(one, locks.PRUNE, wait=False) as first,
        locks.held(two, locks.PRUNE, wait=False) as elsewhere,
    ):
        assert first and elsewhere
