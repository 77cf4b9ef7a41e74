"""Commands that read or write the tables on a database without them (never migrated): exit 3
naming what to do, never a traceback naming a missing table; ``db upgrade`` then lets them
run."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from receiptd.cli import main
from tests.conftest import BACKENDS, create_server_database, drop_server_database, unavailable

COMMANDS = (
    ("status",),
    ("status", "--json"),
    ("compensate", "--once"),
    ("prune", "--dry-run"),
    ("sends", "import", "SENDS"),
)


@pytest.fixture(params=BACKENDS)
def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    backend: str = request.param
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'never-migrated.db'}"
        return
    try:
        url = create_server_database(backend)
    except Exception as exc:  # the server is down: skip, or fail under CI
        unavailable(backend, exc)
    yield url
    drop_server_database(backend, url)


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_a_command_on_a_database_never_migrated_exits_3_saying_what_to_do(
    unmigrated_url: str, args: tuple[str, ...], tmp_path: Path
) -> None:
    sends = tmp_path / "sends.jsonl"
    sends.write_text(
        '{"biz_id": "1^0", "phone_number": "13800000009", "sent_at": "2026-11-24T23:59:00Z"}\n'
    )
    args = tuple(str(sends) if a == "SENDS" else a for a in args)
    env = {"RECEIPTD_DATABASE_URL": unmigrated_url, "RECEIPTD_LOG_LEVEL": "WARNING"}
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exit_code == 3, (result.output, result.exception)
    assert "database schema is not up to date: run 'receiptd db upgrade'" in result.output
    assert "Traceback" not in result.output


def test_after_db_upgrade_status_runs(unmigrated_url: str) -> None:
    env = {"RECEIPTD_DATABASE_URL": unmigrated_url, "RECEIPTD_LOG_LEVEL": "WARNING"}
    runner = CliRunner()
    assert runner.invoke(main, ["db", "upgrade"], env=env).exit_code == 0
    result = runner.invoke(main, ["status", "--json"], env=env)
    assert result.exit_code == 0, result.output
