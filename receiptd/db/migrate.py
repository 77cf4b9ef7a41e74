"""Alembic, driven from Python: the migrations ship inside the package.

The daemon only *checks* the schema at start-up; that check reads ``alembic_version``
directly against :data:`HEAD`, so the long-running process never imports Alembic (and Mako,
Pygments: ~9 MB of resident memory). A unit test keeps HEAD equal to Alembic's own head.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

from receiptd.db import locks

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
HEAD = "0007"  # the newest revision in migrations/versions


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


# Several replicas may start with --migrate at once: one migrates, the others wait.
_PROCESS_LOCK = threading.Lock()


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    # Alembic's command context is process-global: one upgrade per process at a time.
    with _PROCESS_LOCK, locks.held(engine, locks.MIGRATE):
        command.upgrade(alembic_config(engine), revision)


def head_revision(engine: Engine) -> str | None:
    """The head as Alembic computes it from the scripts (tests compare it with HEAD)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def is_up_to_date(engine: Engine) -> bool:
    return current_revision(engine) == HEAD
