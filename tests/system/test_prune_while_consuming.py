"""A prune running inside `receiptd run` while it consumes loses nothing and blocks nothing.

The database holds 120,000 rows past retention (receipts and settled sends 200 days old);
the daemon's daily prune job starts 5 s after start and deletes them in batches of 500 while
receipts stream in (for registered pending sends, so the consumer's settle UPDATEs on
sms_send interleave with the prune's DELETEs on it). Every receipt is stored exactly once,
every send settled, only the old rows are gone, and the consumer kept storing throughout
the prune (no gap longer than 2 s).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from receiptd import domain, ports
from receiptd.db.engine import create_db_engine
from receiptd.db.models import REPORT, SEND
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd_emulator import Emulator
from tests.system.daemon import Daemon, daemon_env, free_port
from tests.system.reliability import Db, receipt_fields, receipt_key

pytestmark = pytest.mark.system

OLD = 60_000  # old receipts, and as many old settled sends
LIVE = 1_500  # receipts streamed while the prune runs
_PRUNED = re.compile(r'^receiptd_pruned_rows_total\{table="(\w+)"\} (\S+)$', re.M)


@pytest.fixture
def db(pg_url: str) -> Iterator[Db]:
    handle = Db(pg_url)
    with handle.engine.begin() as conn:
        for table in (REPORT, SEND):
            conn.execute(table.delete())
    yield handle
    handle.close()


def _old_rows(db: Db) -> None:
    """Bulk rows 200 days old, by the server itself (generate_series)."""
    old = datetime.now(UTC) - timedelta(days=200)
    with db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO sms_report (biz_id, phone_number, success, send_time, received_at)"
                " SELECT 'old' || g, '13000000000', true, :t, :t FROM generate_series(1, :n) g"
            ),
            {"t": old.replace(tzinfo=None), "n": OLD},
        )
        conn.execute(
            sa.text(
                "INSERT INTO sms_send (provider, biz_id, phone_number, sent_at, send_date, status,"
                " settled_by, settled_at, check_count, created_at, updated_at)"
                " SELECT 'aliyun', 'old' || g, '13000000000', :t, :d, 'delivered', 'receipt',"
                " :t, 0, :t, :t FROM generate_series(1, :n) g"
            ),
            {"t": old.replace(tzinfo=None), "d": old.date(), "n": OLD},
        )


def _register_live(pg_url: str) -> None:
    engine = create_db_engine(pg_url)
    try:
        now = datetime.now(UTC)
        new = [
            ports.NewSend(domain.Provider.ALIYUN, *receipt_key(i), now - timedelta(seconds=30))
            for i in range(LIVE)
        ]
        SendStore(SqlStore(engine)).register(new, now)
    finally:
        engine.dispose()


def _pruned(daemon: Daemon) -> float:
    status, body = daemon.get("/metrics")
    return sum(float(v) for _, v in _PRUNED.findall(body.decode())) if status == 200 else 0.0


@pytest.mark.timeout(120)
def test_prune_while_consuming_loses_and_blocks_nothing(
    pg_url: str, db: Db, tmp_path: Path
) -> None:
    _old_rows(db)
    _register_live(pg_url)
    with Emulator(profile="default") as emu:
        env = daemon_env(
            emu,
            pg_url,
            free_port(),
            RECEIPTD_PRUNE_BATCH_SIZE="500",
            RECEIPTD_COMPENSATOR_ENABLED="false",
        )
        daemon = Daemon(env, tmp_path / "receiptd.log")
        try:
            daemon.wait_until(daemon.ready, timeout=20)

            def stream() -> None:  # ~150 receipts/s until LIVE are enqueued (~10 s)
                for i in range(LIVE):
                    emu.enqueue_report(receipt_fields(i))
                    if i % 30 == 29:
                        time.sleep(0.2)

            feeder = threading.Thread(target=stream, daemon=True)
            feeder.start()
            samples = _watch(daemon, db)
            feeder.join(30)
            daemon.wait_until(lambda: _live(db) >= LIVE, timeout=20)
            code, _ = daemon.terminate()
        finally:
            daemon.kill()
    assert code == 0, daemon.log()[-3000:]
    _assert_nothing_lost(db)
    _assert_kept_consuming(samples)
    (finished,) = [e for e in daemon.events() if e.get("event") == "prune_finished"]
    assert finished["deleted"]["sms_report"] == OLD and finished["deleted"]["sms_send"] == OLD


def _live(db: Db) -> int:
    """Receipts of this test's stream stored so far (receipt_fields' BizIds start with 7)."""
    return int(db.scalar(sa.select(sa.func.count()).where(REPORT.c.biz_id.like("7%"))))


def _watch(daemon: Daemon, db: Db) -> list[tuple[float, float, int]]:
    """(time, rows pruned, live receipts stored) every 50 ms until the prune has finished."""
    samples = []
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        pruned = _pruned(daemon)
        samples.append((time.monotonic(), pruned, _live(db)))
        if pruned >= 2 * OLD:
            return samples
        time.sleep(0.05)
    raise AssertionError(f"the prune did not finish:\n{daemon.log()[-3000:]}")


def _assert_nothing_lost(db: Db) -> None:
    keys = db.report_keys()
    assert sorted(keys) == sorted(receipt_key(i) for i in range(LIVE))  # old gone; new, once
    sends = db.sends()
    assert len(sends) == LIVE  # the old settled sends are gone, the live ones all here
    assert all(s["status"] != "pending" and s["settled_by"] == "receipt" for s in sends)
    assert db.dead_letters() == []


def _assert_kept_consuming(samples: list[tuple[float, float, int]]) -> None:
    """While the prune was running, stored receipts kept growing (no gap over 2 s)."""
    running = [s for s in samples if 0 < s[1] < 2 * OLD]
    assert len(running) >= 3, "the prune was too quick to observe an overlap"
    flowing = [s for s in running if s[2] < LIVE]
    assert flowing and flowing[-1][2] > flowing[0][2], "nothing stored during the prune"
    longest, since = 0.0, flowing[0]
    for sample in flowing[1:]:
        if sample[2] > since[2]:
            since = sample
        longest = max(longest, sample[0] - since[0])
    print(
        f"prune ran {running[-1][0] - running[0][0]:.1f} s; receipts stored meanwhile: "
        f"{flowing[-1][2] - flowing[0][2]}; longest stall {longest:.2f} s"
    )
    assert longest < 2.0, f"the consumer stalled {longest:.1f} s during the prune"
