"""`receiptd run` as an operator runs it: readiness, probes, metrics, sd_notify, drain."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from receiptd.db.engine import create_db_engine
from receiptd.db.models import REPORT
from receiptd_emulator import Emulator
from tests.system.daemon import Daemon, daemon_env, free_port
from tests.system.notifysocket import NotifySocket
from tests.system.reliability import CutProxy

pytestmark = pytest.mark.system


def report_fields(i: int) -> dict[str, object]:
    return {
        "phone_number": f"138{i:08d}",
        "success": i % 7 != 0,
        "biz_id": f"9{i:014d}^0",
        "out_id": f"o{i}",
        "send_time": "2026-11-25 10:00:00",
        "report_time": "2026-11-25 10:00:03",
        "err_code": "DELIVERED" if i % 7 else "MK:0001",
        "err_msg": "用户接收成功" if i % 7 else "失败",
        "sms_size": "1",
    }


def stored_reports(db_url: str) -> tuple[int, int]:
    """(rows, distinct (biz_id, phone) pairs) in sms_report."""
    engine = create_db_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(sa.func.count()).select_from(REPORT)).scalar_one()
            keys = conn.execute(
                sa.select(sa.func.count()).select_from(
                    sa.select(REPORT.c.biz_id, REPORT.c.phone_number).distinct().subquery()
                )
            ).scalar_one()
    finally:
        engine.dispose()
    return int(rows), int(keys)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(profile="default") as emu:
        yield emu


def test_run_probes_notify_outage_and_drain(
    emulator: Emulator, pg_url: str, proxy: CutProxy, tmp_path: Path
) -> None:
    proxied_url = make_url(pg_url).set(port=proxy.port).render_as_string(hide_password=False)
    notify = NotifySocket(tmp_path / "notify.sock")
    env = daemon_env(
        emulator,
        proxied_url,
        free_port(),
        NOTIFY_SOCKET=str(notify.path),
        WATCHDOG_USEC="1000000",
        # Production defaults for what this test measures: readiness and the SIGTERM drain.
        RECEIPTD_CONSUMER_WAIT_SECONDS="5",
        RECEIPTD_CONSUMER_SOCKET_TIMEOUT="45",
    )
    daemon = Daemon(env, tmp_path / "receiptd.log")
    try:
        ready_after = daemon.wait_until(daemon.ready, timeout=30)
        print(f"receiptd run ready after {ready_after:.2f} s (process start to /readyz 200)")

        status, body = daemon.get("/healthz")
        assert status == 200, body
        status, body = daemon.get("/metrics")
        assert status == 200
        for name in (
            b"receiptd_messages_total",
            b"receiptd_batch_duration_seconds",
            b"receiptd_build_info",
            b"receiptd_ready 1.0",
        ):
            assert name in body, name

        # Load, then a database outage through the proxy: readiness drops and comes back.
        for i in range(500):
            emulator.enqueue_report(report_fields(i))
        daemon.wait_until(lambda: stored_reports(pg_url)[0] >= 100, timeout=60)
        proxy.cut()
        daemon.wait_until(lambda: not daemon.ready(), timeout=30)
        for i in range(500, 1000):
            emulator.enqueue_report(report_fields(i))
        time.sleep(1.0)  # writes fail meanwhile; nothing may be deleted
        proxy.restore()
        recovery = daemon.wait_until(daemon.ready, timeout=30)
        print(f"readiness recovered {recovery:.2f} s after the database returned")

        # SIGTERM while the queue still holds messages: clean exit within the drain bound.
        for i in range(1000, 3000):
            emulator.enqueue_report(report_fields(i))
        time.sleep(0.3)
        code, seconds = daemon.terminate(signal.SIGTERM)
        print(f"SIGTERM under load: exit {code} after {seconds:.2f} s")
        assert code == 0, daemon.log()[-3000:]
        assert seconds < 10
    finally:
        daemon.kill()
        notify.close()

    assert "READY=1" in notify.messages
    assert "STOPPING=1" in notify.messages
    assert "WATCHDOG=1" in notify.messages
    assert any(m.startswith("STATUS=") for m in notify.messages)

    # Nothing lost: every receipt is either stored or still queued; a restart drains the rest.
    rows, keys = stored_reports(pg_url)
    assert rows == keys  # no duplicates
    depth = emulator.queue_depth("report")
    assert rows + sum(depth.values()) >= 3000
    daemon2 = Daemon(daemon_env(emulator, pg_url, free_port()), tmp_path / "receiptd2.log")
    try:
        daemon2.wait_until(lambda: stored_reports(pg_url)[0] == 3000, timeout=120)
    finally:
        code, _ = daemon2.terminate()
    assert code == 0
    assert stored_reports(pg_url) == (3000, 3000)
