"""Migrations on SQLite, PostgreSQL and MariaDB, through the CLI as an operator runs them."""

from __future__ import annotations

import os
import subprocess
import sys

import sqlalchemy as sa

from receiptd.db import migrate
from receiptd.db.models import Base


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
