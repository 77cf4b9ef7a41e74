"""Crash safety: `kill -9` the daemon at 20 random moments of a 20,000-receipt load.

Delete-after-commit plus idempotent writes must leave every receipt stored exactly once and the
queue empty, however often the process dies (mid-transaction, between commit and delete,
during start-up). The moments come from a seeded RNG, so a failure reproduces.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from receiptd_emulator import Emulator
from tests.system.daemon import Daemon, daemon_env, free_port
from tests.system.reliability import Db, QueueTap, queue_total, receipt_fields, receipt_key

pytestmark = pytest.mark.system

SEED = 20260917
UNIQUE = 19_000
DUPLICATES = 1_000  # the same body enqueued again: a second message with the same key
KILLS = 20
STARTUP_KILL_SHARE = 0.25  # this share of kills hits a daemon that is still starting
VISIBILITY = 3  # seconds: a message whose holder died is redelivered this soon


@pytest.fixture
def db(pg_url: str) -> Iterator[Db]:
    handle = Db(pg_url)
    yield handle
    handle.close()


def _enqueue_load(emu: Emulator, rng: random.Random) -> None:
    order = list(range(UNIQUE)) + rng.sample(range(UNIQUE), DUPLICATES)
    rng.shuffle(order)
    for i in order:
        emu.enqueue_report(receipt_fields(i))


def _kill_at_random_moment(
    daemon: Daemon, db: Db, rng: random.Random, kills_left: int
) -> tuple[str, int]:
    """SIGKILL the daemon during start-up, or mid-load once a random number of further rows
    is stored (drawn so that the remaining kills still land while receipts are flowing)."""
    rows = db.report_rows()
    threshold = rows + rng.randint(1, max(2, (UNIQUE - rows) // (kills_left + 1)))
    if rng.random() < STARTUP_KILL_SHARE:
        delay = rng.uniform(0.1, 1.0)
        moment = f"start-up +{delay:.2f}s"
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and daemon.proc.poll() is None:
            time.sleep(0.02)
    else:
        # Past the last receipt (only if earlier lives overshot) the kill still happens.
        daemon.wait_until(lambda: db.report_rows() >= min(threshold, UNIQUE), timeout=120)
        time.sleep(rng.uniform(0.0, 0.1))
        moment = f">= {threshold} rows"
    assert daemon.proc.poll() is None, f"receiptd exited by itself:\n{daemon.log()[-3000:]}"
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(10)
    daemon.kill()  # closes the log handle
    return moment, db.report_rows()


@pytest.mark.timeout(600)
def test_kill_9_twenty_times_under_load_loses_and_duplicates_nothing(
    pg_url: str, db: Db, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    with Emulator(profile="default") as emu:
        emu.set_queue_attributes("report", visibility_timeout=VISIBILITY)
        tap = QueueTap.attach(emu)
        _enqueue_load(emu, rng)
        env = daemon_env(emu, pg_url, free_port())
        kills: list[tuple[str, int]] = []
        started = time.monotonic()
        for k in range(KILLS):
            daemon = Daemon(env, tmp_path / f"life-{k:02d}.log")
            try:
                kills.append(_kill_at_random_moment(daemon, db, rng, KILLS - k))
            finally:
                daemon.kill()
        final = Daemon(env, tmp_path / "final.log")
        try:
            final.wait_until(final.ready, timeout=60)
            final.wait_until(
                lambda: db.report_rows() >= UNIQUE and queue_total(emu) == 0, timeout=240
            )
            code, _ = final.terminate(signal.SIGTERM)
        finally:
            final.kill()
        elapsed = time.monotonic() - started
        deliveries, redeliveries, deleted = tap.deliveries, tap.redeliveries, tap.deleted
        depth = emu.queue_depth("report")

    keys = db.report_keys()
    expected = {receipt_key(i) for i in range(UNIQUE)}
    lost = len(expected - set(keys))
    duplicated = len(keys) - len(set(keys))
    print(
        f"\ncrash safety: {UNIQUE + DUPLICATES} messages ({UNIQUE} unique), {len(kills)} kill -9 "
        f"({sum(1 for m, _ in kills if m.startswith('start'))} during start-up), "
        f"{deliveries} deliveries, {redeliveries} redeliveries, {deleted} deleted, "
        f"lost {lost}, duplicated {duplicated}, {elapsed:.1f} s"
    )
    for n, (moment, rows) in enumerate(kills):
        print(f"  kill {n + 1:2d}: {moment:<18} rows at kill {rows}")
    assert code == 0
    assert len(kills) == KILLS
    assert lost == 0
    assert duplicated == 0
    assert set(keys) == expected
    assert depth == {"visible": 0, "inflight": 0, "delayed": 0}
    assert deleted == UNIQUE + DUPLICATES  # every message deleted once, after its commit
    assert redeliveries > 0  # the kills did hit messages in flight
