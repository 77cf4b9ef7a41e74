"""System-test fixtures: a scratch PostgreSQL database and a running emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import _ensure_database
from tests.system.reliability import CutProxy


@pytest.fixture(scope="module")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated PostgreSQL database of this module's own, dropped afterwards."""
    from tests.conftest import drop_server_database

    urls: dict[str, str] = {}
    url = _ensure_database("postgresql", urls, Path(tmp_path_factory.mktemp("pg")))
    yield url
    drop_server_database("postgresql", url)


@pytest.fixture
def proxy(pg_url: str) -> Iterator[CutProxy]:
    """A TCP proxy in front of the module's PostgreSQL that a test can cut and restore."""
    url = make_url(pg_url)
    p = CutProxy(url.host or "127.0.0.1", url.port or 5432).start()
    yield p
    p.close()
