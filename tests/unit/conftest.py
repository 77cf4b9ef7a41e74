"""Unit-test fixtures: a migrated SQLite SendStore in a temporary file (no server needed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from receiptd.db import migrate
from receiptd.db.engine import create_db_engine
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore


@pytest.fixture
def sends(tmp_path: Path) -> Iterator[SendStore]:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'sends.db'}")
    migrate.upgrade(engine)
    yield SendStore(SqlStore(engine))
    engine.dispose()
