"""Alembic, driven from Python: the migrations ship inside the package."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


# Several replicas may start with --migrate at once: one migrates, the others wait.
_LOCK_KEY = 0x72656365  # "rece"
_LOCK_NAME = "receiptd_migrate"
_PROCESS_LOCK = threading.Lock()


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    backend = engine.dialect.name
    if backend == "sqlite":  # a single writer already
        yield
        return
    with engine.connect() as conn:
        if backend == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_KEY})
        else:
            conn.execute(text("SELECT GET_LOCK(:n, 300)"), {"n": _LOCK_NAME})
        conn.commit()
        try:
            yield
        finally:
            if backend == "postgresql":
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
            else:
                conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": _LOCK_NAME})
            conn.commit()


def upgrade(engine: Engine, revision: str = "head") -> None:
    # Alembic's command context is process-global: one upgrade per process at a time.
    with _PROCESS_LOCK, _migration_lock(engine):
        command.upgrade(alembic_config(engine), revision)


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_up_to_date(engine: Engine) -> bool:
    return current_revision(engine) == head_revision(engine)
