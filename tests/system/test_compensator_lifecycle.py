"""The compensator's lifecycle inside `receiptd run`: a stop in the middle of a long cycle.

The cycle must make no further provider call, release its claims and be awaited before the
engine is disposed; the daemon exits 0 within the drain bound and logs no error.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from receiptd import domain, ports
from receiptd.clock import utc_now
from receiptd.db.engine import create_db_engine
from receiptd.db.models import SEND
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd_emulator import Emulator
from tests.system.daemon import Daemon, daemon_env, free_port

pytestmark = pytest.mark.system

SENDS = 400
RATE = 20  # calls per second: the cycle would take SENDS / RATE = 20 s


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(profile="default") as emu:
        yield emu


def register_unknown_sends(db_url: str) -> None:
    """Sends the provider knows nothing of: every query answers "no record", one call each."""
    engine = create_db_engine(db_url)
    try:
        now = utc_now()
        SendStore(SqlStore(engine)).register(
            [
                ports.NewSend(
                    domain.Provider.ALIYUN, f"7{i:014d}^0", "13800000001", now - timedelta(hours=1)
                )
                for i in range(SENDS)
            ],
            now,
        )
    finally:
        engine.dispose()


def send_columns(db_url: str) -> tuple[int, int]:
    """(sends still claimed, sends whose check was counted)."""
    engine = create_db_engine(db_url)
    try:
        with engine.connect() as conn:
            count = sa.select(sa.func.count()).select_from(SEND)
            claimed = conn.execute(count.where(SEND.c.claimed_by.is_not(None))).scalar_one()
            checked = conn.execute(count.where(SEND.c.check_count > 0)).scalar_one()
    finally:
        engine.dispose()
    return int(claimed), int(checked)


def test_sigterm_in_the_middle_of_a_long_cycle(
    emulator: Emulator, pg_url: str, tmp_path: Path
) -> None:
    register_unknown_sends(pg_url)
    env = daemon_env(
        emulator,
        pg_url,
        free_port(),
        RECEIPTD_COMPENSATOR_RATE_LIMIT=str(RATE),
        RECEIPTD_COMPENSATOR_GRACE="0",
        RECEIPTD_SHUTDOWN_TIMEOUT="10",
    )
    daemon = Daemon(env, tmp_path / "receiptd.log")
    try:
        daemon.wait_until(lambda: len(emulator.calls("QuerySendDetails")) >= 2 * RATE, timeout=60)
        calls_at_term = len(emulator.calls("QuerySendDetails"))
        code, seconds = daemon.terminate(signal.SIGTERM)
    finally:
        daemon.kill()
    calls_at_exit = len(emulator.calls("QuerySendDetails"))
    print(f"SIGTERM mid-cycle: exit {code} after {seconds:.2f} s, {calls_at_exit} calls made")

    assert code == 0, daemon.log()[-3000:]
    assert seconds < 10
    assert calls_at_exit - calls_at_term <= 1  # at most the call in flight at the signal
    assert calls_at_exit < SENDS  # the cycle was cut short, not run to its end
    claimed, backed_off = send_columns(pg_url)
    assert claimed == 0  # every claim released, none left for the lease to free
    assert backed_off == SENDS  # released with their backoff, asked or not
    events = daemon.events()
    errors = [e for e in events if e.get("level") in ("error", "critical")]
    assert errors == [], errors
    (stopped,) = [e for e in events if e.get("event") == "service_stopped"]
    assert stopped["drained"] is True
    assert any(e.get("event") == "compensation_stopping" for e in events)
