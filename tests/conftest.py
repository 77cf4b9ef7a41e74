"""Shared fixtures: a fresh database per test session on SQLite, PostgreSQL and MariaDB.

Every backend is reached over a real connection. Locally a backend that is down is skipped;
under ``CI=true`` it is a failure (``.ci/run`` starts the services first).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from receiptd import logs
from receiptd.db import migrate
from receiptd.db.engine import create_db_engine
from receiptd.db.models import Base

SERVERS = {
    "postgresql": os.environ.get(
        "RECEIPTD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get(
        "RECEIPTD_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
    ),
}
BACKENDS = ("sqlite", "postgresql", "mariadb")
TESTS = Path(__file__).resolve().parent
IN_CI = os.environ.get("CI") == "true"


def unavailable(backend: str, exc: Exception) -> None:
    message = f"{backend} unavailable: {exc}"
    if IN_CI:
        pytest.fail(message + " (CI requires every database)")
    pytest.skip(message)


def create_server_database(backend: str) -> str:
    admin_url = make_url(SERVERS[backend])
    name = f"receiptd_t_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if backend == "mariadb":
                conn.execute(
                    sa.text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
                )
            else:
                conn.execute(sa.text(f"CREATE DATABASE {name}"))
                # A test database need not survive a crash of the server itself (the tests
                # kill daemons, never PostgreSQL): commits return before their WAL is flushed.
                # What a commit makes visible, and when, is unchanged.
                conn.execute(sa.text(f"ALTER DATABASE {name} SET synchronous_commit TO off"))
    finally:
        admin.dispose()
    return admin_url.set(database=name).render_as_string(hide_password=False)


def drop_server_database(backend: str, url: str) -> None:
    admin = sa.create_engine(make_url(SERVERS[backend]), isolation_level="AUTOCOMMIT")
    name = make_url(url).database
    try:
        with admin.connect() as conn:
            if backend == "postgresql":
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
    finally:
        admin.dispose()


@pytest.fixture(autouse=True, scope="session")
def _loggers_never_frozen() -> None:
    """receiptd.logs.CACHE_LOGGERS says why: after an in-process CLI test has configured
    logging, a later test's capture_logs must still see every logger."""
    logs.CACHE_LOGGERS = False


@pytest.fixture(scope="session")
def database_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Lazily created, migrated databases; dropped at the end of the session."""
    created: dict[str, str] = {}
    yield created
    for backend, url in created.items():
        if backend != "sqlite":
            drop_server_database(backend, url)


def _ensure_database(backend: str, urls: dict[str, str], tmp: Path) -> str:
    if backend not in urls:
        if backend == "sqlite":
            url = f"sqlite:///{tmp / 'receiptd-test.db'}"
        else:
            try:
                url = create_server_database(backend)
            except sa.exc.OperationalError as exc:
                unavailable(backend, exc)
        engine = create_db_engine(url)
        try:
            migrate.upgrade(engine)
        finally:
            engine.dispose()
        urls[backend] = url
    return urls[backend]


@pytest.fixture(params=BACKENDS)
def db_url(
    request: pytest.FixtureRequest,
    database_urls: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """A migrated database per backend, emptied before each test."""
    backend: str = request.param
    yield emptied_database(backend, database_urls, tmp_path_factory)


def emptied_database(
    backend: str, urls: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The session's migrated database of ``backend``, every table emptied."""
    url = _ensure_database(backend, urls, tmp_path_factory.getbasetemp())
    engine = create_db_engine(url)
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
    engine.dispose()
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = create_db_engine(db_url)
    yield eng
    eng.dispose()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test`` runs ``-n`` workers with ``--dist loadgroup``) a
    module's tests run in one worker, so its module fixtures (an emulator, daemons, a scratch
    database) are built once; the deploy tier is one group: its tests share one Docker Engine
    data root and one debootstrap'd tree, which two workers must not drive at once.

    The markers are read where the items are collected, in each worker, and there xdist sets
    ``--dist`` to "no" and ``loadgroup`` to what was asked (xdist/remote.py): asking ``dist``
    here made the hook a no-op in every worker, so the groups never existed — a module's
    tests went to several workers, each building the module's fixtures (two ``python -m
    build`` in one checkout deleted each other's sdist tree; two image builds untagged each
    other's image)."""
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        path = Path(str(item.path)).resolve().relative_to(TESTS)
        group = "deploy" if path.parts[0] == "deploy" else path.as_posix()
        item.add_marker(pytest.mark.xdist_group(group))


_MIGRATION_BACKENDS: dict[str, str] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Remember, per backend, how the migration tests went (for the summary below)."""
    if report.when == "call" and "test_migrations.py" in report.nodeid and "[" in report.nodeid:
        backend = report.nodeid.rsplit("[", 1)[1].rstrip("]")
        if _MIGRATION_BACKENDS.get(backend) != "failed":
            _MIGRATION_BACKENDS[backend] = report.outcome


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _MIGRATION_BACKENDS:
        line = ", ".join(f"{b}: {o}" for b, o in sorted(_MIGRATION_BACKENDS.items()))
        terminalreporter.write_line(f"migration tests by database: {line}")


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """The groups above hold, or the suite stops: xdist marks a grouped test by renaming its
    node id (``…@group``), and a pytest that ignores the rename (9.2, pytest-dev/pytest-xdist
    #1386) would silently spread a module over workers again."""
    grouping = getattr(session.config.option, "loadgroup", False)
    if grouping and session.items and not any("@" in item.nodeid for item in session.items):
        raise pytest.UsageError(
            "pytest-xdist lost the test groups (--dist loadgroup): see the pytest pin in "
            "pyproject.toml"
        )
