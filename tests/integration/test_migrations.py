"""Migrations on SQLite, PostgreSQL and MariaDB, through the CLI as an operator runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command as alembic_command

from receiptd.db import migrate
from receiptd.db.models import Base
from tests.conftest import create_server_database, drop_server_database, unavailable


def receiptd(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIPTD_")}
    env["RECEIPTD_DATABASE_URL"] = db_url
    return subprocess.run(
        [sys.executable, "-m", "receiptd", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_upgrade_is_idempotent_and_current_shows_head(db_url: str, engine: sa.Engine) -> None:
    backend = engine.dialect.name
    head = migrate.head_revision(engine)
    first = receiptd(db_url, "db", "upgrade")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"already at {head}", backend  # the fixture migrated it
    current = receiptd(db_url, "db", "current")
    assert current.returncode == 0, current.stderr
    assert current.stdout.strip() == f"{head} (head)"
    print(f"migrations verified on {backend}: head {head}")


def test_schema_matches_models(engine: sa.Engine) -> None:
    """The migration creates exactly the tables and columns the models declare."""
    inspector = sa.inspect(engine)
    for table in Base.metadata.sorted_tables:
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert columns == {c.name for c in table.columns}, table.name
        uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table.name)}
        for constraint in table.constraints:
            if isinstance(constraint, sa.UniqueConstraint):
                assert tuple(c.name for c in constraint.columns) in uniques


def test_fresh_database_upgrades_from_empty(db_url: str, engine: sa.Engine) -> None:
    """Downgrade-free check: an empty schema (its own database) reaches head via the CLI."""
    if engine.dialect.name != "sqlite":
        return  # server databases are created fresh per session by the fixture already
    fresh = db_url.replace("receiptd-test.db", "fresh.db")
    out = receiptd(fresh, "db", "upgrade")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("upgraded <empty> -> ")
    again = receiptd(fresh, "db", "upgrade")
    assert again.stdout.startswith("already at ")


def test_concurrent_upgrades_are_serialised(db_url: str, engine: sa.Engine) -> None:
    """Replicas starting together with --migrate: all succeed, one schema results."""
    import threading

    errors: list[BaseException] = []

    def run() -> None:
        try:
            from receiptd.db.engine import create_db_engine

            eng = create_db_engine(db_url)
            migrate.upgrade(eng)
            eng.dispose()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert migrate.is_up_to_date(engine)


def test_head_constant_matches_the_scripts(engine: sa.Engine) -> None:
    """migrate.HEAD (read by the daemon without Alembic) is Alembic's own head."""
    assert migrate.head_revision(engine) == migrate.HEAD
    assert migrate.is_up_to_date(engine)


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def db_at_0005(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """A database of its own at 0005 (accounts, before international sends)."""
    backend: str = request.param
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'at-0005.db'}"
    else:
        try:
            url = create_server_database(backend)
        except sa.exc.OperationalError as exc:
            unavailable(backend, exc)
    engine = sa.create_engine(url)
    try:
        migrate.upgrade(engine, "0005")
        yield engine
    finally:
        engine.dispose()
        if backend != "sqlite":
            drop_server_database(backend, url)


def _insert(conn: sa.Connection, table: str, **values: object) -> None:
    names = ", ".join(values)
    marks = ", ".join(f":{k}" for k in values)
    conn.execute(sa.text(f"INSERT INTO {table} ({names}) VALUES ({marks})"), values)  # noqa: S608


WHEN = "2026-12-01 01:00:00"  # naive UTC, as the columns store it
SEND_ROW = {
    "provider": "aliyun",
    "biz_id": "10080303003003",
    "phone_number": "85212345678",
    "sent_at": WHEN,
    "send_date": date(2026, 12, 1),
    "status": "pending",
    "check_count": 0,
    "created_at": WHEN,
    "updated_at": WHEN,
}


def test_0006_keeps_every_row_a_biz_id_send_and_tells_the_two_ids_apart(
    db_at_0005: sa.Engine,
) -> None:
    engine = db_at_0005
    with engine.begin() as conn:
        _insert(conn, "sms_send", **SEND_ROW)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        (old,) = conn.execute(sa.text("SELECT matched_by, task_id FROM sms_send")).all()
        assert tuple(old) == ("biz_id", None)
        # The same text as a MessageId is another send (the unique key includes matched_by) ...
        _insert(conn, "sms_send", **SEND_ROW, matched_by="message_id", task_id="T1")
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        _insert(conn, "sms_send", **SEND_ROW, matched_by="message_id")  # ... once
    # A downgrade would make the MessageId send pass for a BizId one: refused while it exists.
    config = migrate.alembic_config(engine)
    alembic_command.downgrade(config, "0006")  # the later revisions first (DDL is not
    # transactional on SQLite and MariaDB: a refusal must not leave them half undone)
    with pytest.raises(RuntimeError, match="matched by MessageId"):
        alembic_command.downgrade(config, "0005")
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM sms_send WHERE matched_by = 'message_id'"))
    alembic_command.downgrade(config, "0005")
    assert migrate.current_revision(engine) == "0005"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM sms_send")).scalar_one() == 1
