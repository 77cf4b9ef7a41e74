"""Database outage: the connection to PostgreSQL is cut for 60 s while receipts keep coming.

While writes fail: /readyz is false, the row count does not move, and not one message is
deleted from the queue (delete-after-commit), so stored + queued never drops below enqueued.
When the database returns, /readyz is true and rows grow again within 5 s, and every receipt
ends up stored exactly once.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from receiptd_emulator import Emulator
from tests.system.daemon import Daemon, daemon_env, free_port
from tests.system.reliability import (
    CutProxy,
    Db,
    QueueTap,
    queue_total,
    receipt_fields,
    receipt_key,
    wait_for,
)

pytestmark = pytest.mark.system

OUTAGE = 60.0
RECOVERY_BOUND = 5.0  # the scenario's own bound (seconds after the database returns)
BEFORE = 6_000  # enqueued before the cut
DURING = 3_000  # enqueued while the database is away (50 every second)
SETTLE = 1.0  # a commit answered just before the cut may still delete right after it
POLL = 0.5


@dataclass
class OutageLog:
    """What the test saw at each poll while the database was away."""

    ready: list[tuple[float, int]] = field(default_factory=list)  # (seconds into outage, code)
    rows: set[int] = field(default_factory=set)
    shortfalls: list[str] = field(default_factory=list)  # stored + queued < enqueued


@pytest.fixture
def db(pg_url: str) -> Iterator[Db]:
    handle = Db(pg_url)
    yield handle
    handle.close()


class Feeder:
    """Enqueues receipts ``start``.. at a steady pace in a thread; ``enqueued`` is exact."""

    def __init__(self, emu: Emulator, start: int, count: int, per_second: int) -> None:
        self.emu, self.next, self.end, self.pace = emu, start, start + count, per_second
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while self.next < self.end:
            for _ in range(min(self.pace // 10, self.end - self.next)):
                with self.lock:
                    self.emu.enqueue_report(receipt_fields(self.next))
                    self.next += 1
            time.sleep(0.1)

    @property
    def enqueued(self) -> int:
        with self.lock:
            return self.next


def _watch_outage(
    daemon: Daemon, db: Db, emu: Emulator, feeder: Feeder, cut_at: float
) -> OutageLog:
    seen = OutageLog()
    while (elapsed := time.monotonic() - cut_at) < OUTAGE:
        seen.ready.append((elapsed, daemon.get("/readyz")[0]))
        if elapsed >= SETTLE:
            with feeder.lock:  # enqueued and queue depth read at one instant
                enqueued, queued = feeder.next, queue_total(emu)
            rows = db.report_rows()
            seen.rows.add(rows)
            if rows + queued < enqueued:
                seen.shortfalls.append(f"{elapsed:.1f}s: {rows} + {queued} < {enqueued}")
        assert daemon.proc.poll() is None, daemon.log()[-3000:]
        time.sleep(POLL)
    return seen


@pytest.mark.timeout(600)
def test_sixty_second_database_outage_under_load(
    pg_url: str, db: Db, proxy: CutProxy, tmp_path: Path
) -> None:
    proxied = make_url(pg_url).set(port=proxy.port).render_as_string(hide_password=False)
    with Emulator(profile="default") as emu:
        tap = QueueTap.attach(emu)
        env = daemon_env(emu, proxied, free_port(), RECEIPTD_COMPENSATOR_ENABLED="false")
        daemon = Daemon(env, tmp_path / "receiptd.log")
        try:
            daemon.wait_until(daemon.ready, timeout=60)
            for i in range(BEFORE):
                emu.enqueue_report(receipt_fields(i))
            feeder = Feeder(emu, BEFORE, DURING, per_second=50)
            daemon.wait_until(lambda: db.report_rows() >= 1_000, timeout=120)

            proxy.cut()
            cut_at = time.monotonic()
            feeder.thread.start()
            seen = _watch_outage(daemon, db, emu, feeder, cut_at)
            rows_at_restore = db.report_rows()
            proxy.restore()
            restored_at = time.monotonic()
            ready_after = wait_for(daemon.ready, 60, "/readyz true after the outage", 0.05)
            growing_after = time.monotonic() - restored_at
            growing_after += wait_for(
                lambda: db.report_rows() > rows_at_restore, 120, "rows growing again", 0.05
            )
            feeder.thread.join(120)
            total = feeder.enqueued
            daemon.wait_until(
                lambda: db.report_rows() >= total and queue_total(emu) == 0, timeout=180
            )
            code, _ = daemon.terminate(signal.SIGTERM)
        finally:
            daemon.kill()
        deleted_in_outage = tap.deleted_between(cut_at + SETTLE, restored_at)
        successful_delete_calls = [
            c
            for c in emu.calls("MNS.BatchDeleteMessage")
            if cut_at + SETTLE <= c.monotonic < restored_at and c.status == 204
        ]

    not_ready = [code for t, code in seen.ready if code != 200]
    first_unready = next(t for t, code in seen.ready if code != 200)
    flapped = [t for t, code in seen.ready if t > first_unready and code == 200]
    keys = db.report_keys()
    recovery = max(ready_after, growing_after)
    print(
        f"\ndatabase outage: {OUTAGE:.0f} s, {BEFORE} receipts before + {total - BEFORE} during; "
        f"/readyz false {first_unready:.2f} s after the cut, {len(not_ready)}/{len(seen.ready)} "
        f"polls false; rows during outage {sorted(seen.rows)}; deleted during outage "
        f"{deleted_in_outage}; /readyz true {ready_after:.2f} s and rows growing "
        f"{growing_after:.2f} s after the database returned; {len(keys)} rows"
    )
    assert code == 0
    assert first_unready < 15  # the probe notices promptly
    assert flapped == []  # and stays false for the whole outage
    assert len(seen.rows) == 1  # not one row written while the database was away
    assert deleted_in_outage == 0  # nothing deleted while writes fail
    assert successful_delete_calls == []
    assert seen.shortfalls == []  # stored + queued never below enqueued
    assert len(keys) == len(set(keys)) == total
    assert set(keys) == {receipt_key(i) for i in range(total)}
    assert recovery <= RECOVERY_BOUND, f"recovery took {recovery:.2f} s"
