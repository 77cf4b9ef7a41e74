"""Provider faults: 10 % of MNS, Dysmsapi and Dybaseapi calls fail (5xx, resets, throttling)
or answer slowly, every queue token expires mid-run, and 30 % of receipts are lost.

Sends go out through ``receiptd.api.send_and_register``; the daemon must store every receipt once,
settle every registered send with the provider's true status (the lost ones by query), stay
up, exit 0 on SIGTERM, and keep the compensator within its rate limit.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from receiptd import api, wiring
from receiptd.compensation.ratelimit import default_burst
from receiptd.db.engine import create_db_engine
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd.providers.aliyun import dysms
from receiptd.testing.emulated import emulator_settings
from receiptd_emulator import Emulator, FaultSpec, Profile, SendRecord
from tests.system.daemon import Daemon, daemon_env, free_port
from tests.system.reliability import Db, max_in_window, queue_total

pytestmark = pytest.mark.system

SENDS = 150  # SendSms calls
NUMBERS_PER_SEND = 3
# Compensator requests per second. At 10/s (burst 1) the token bucket lets at most 10 calls
# start in any 1-s window; the bound checked at the emulator is rate + burst = 11, so one call
# of slack absorbs transit jitter up to 1/rate = 100 ms between the client and the emulator.
RATE = 10.0
FAULTS = {
    # 10 % of calls fail (5xx, throttled, reset before or after taking effect), 2-3 % are slow.
    "mns": FaultSpec(
        error_rate=0.04, throttle_rate=0.03, reset_rate=0.03, latency=0.5, latency_rate=0.02, seed=1
    ),
    "dysms": FaultSpec(
        error_rate=0.04, throttle_rate=0.03, reset_rate=0.03, latency=0.4, latency_rate=0.03, seed=2
    ),
    "dybase": FaultSpec(error_rate=0.05, throttle_rate=0.03, reset_rate=0.02, seed=3),
}
PROFILE = Profile(
    name="lossy-with-faults",
    seed=424242,
    delivered=0.9,
    failed=0.1,
    lost=0.3,
    duplicate=0.05,
    late=0.05,
    late_delay=(6.0, 12.0),
    receipt_delay=(0.5, 4.0),
)
STATUS = {3: "delivered", 2: "failed"}


@pytest.fixture
def db(pg_url: str) -> Iterator[Db]:
    handle = Db(pg_url)
    yield handle
    handle.close()


def _send_all(emu: Emulator, pg_url: str) -> tuple[int, int]:
    """SendSms + registration through receiptd.api; a failed call is retried like an
    application would. Returns (registered recipients, failed attempts)."""
    settings = emulator_settings(emu.info, pg_url)
    client = wiring.dysms_client(settings)
    engine = create_db_engine(pg_url)
    store = SendStore(SqlStore(engine), settings.timezone)
    registered = failures = 0
    try:
        for n in range(SENDS):
            numbers = [f"137{n * NUMBERS_PER_SEND + k:08d}" for k in range(NUMBERS_PER_SEND)]
            for _attempt in range(20):
                try:
                    result = api.send_and_register(
                        client,
                        store,
                        numbers,
                        emu.info.sign_name,
                        emu.info.template_code,
                        {"code": f"{n:04d}"},
                        f"order-{n}",
                    )
                except dysms.DysmsError:
                    failures += 1
                    continue
                registered += result.registered
                break
            else:
                raise AssertionError(f"send {n} failed 20 times")
    finally:
        engine.dispose()
    return registered, failures


def _expected_receipts(records: list[SendRecord]) -> set[tuple[str, str]]:
    """Every receipt the provider put (or will put) on the queue."""
    return {
        (r.biz_id, r.phone_number)
        for r in records
        if r.receipt_fate in ("queue", "duplicate", "late") and r.status in STATUS
    }


def _settled(db: Db) -> bool:
    sends = db.sends()
    return bool(sends) and all(s["status"] != "pending" for s in sends)


@pytest.mark.timeout(600)
def test_provider_faults_token_expiry_and_lost_receipts(
    pg_url: str, db: Db, tmp_path: Path
) -> None:
    burst = default_burst(RATE)
    with Emulator(profile=PROFILE) as emu:
        for queue in ("report", "up"):
            emu.set_queue_attributes(queue, visibility_timeout=5)
        for group, spec in FAULTS.items():
            emu.set_faults(group, spec)
        env = daemon_env(
            emu,
            pg_url,
            free_port(),
            RECEIPTD_COMPENSATOR_INTERVAL="4",
            RECEIPTD_COMPENSATOR_GRACE="8",
            RECEIPTD_COMPENSATOR_MAX_BACKOFF="8",
            RECEIPTD_COMPENSATOR_RATE_LIMIT=str(RATE),
        )
        daemon = Daemon(env, tmp_path / "receiptd.log")
        try:
            daemon.wait_until(daemon.ready, timeout=120)
            registered, send_failures = _send_all(emu, pg_url)
            half = registered * 0.6 // 2  # about half of the receipts that will arrive
            daemon.wait_until(lambda: db.report_rows() >= half, timeout=120)
            expired_at = time.monotonic()
            expired_tokens = emu.expire_tokens()
            daemon.wait_until(
                lambda: (
                    _settled(db)
                    and set(db.report_keys()) >= _expected_receipts(emu.records())
                    and queue_total(emu, "report") + queue_total(emu, "up") == 0
                ),
                timeout=300,
            )
            alive_at_end = daemon.proc.poll() is None
            code, _ = daemon.terminate(signal.SIGTERM)
        finally:
            daemon.kill()
        records = emu.records()
        calls = emu.calls()

    truth = {(r.biz_id, r.phone_number): r for r in records}
    expected = _expected_receipts(records)
    sends = db.sends()
    keys = db.report_keys()
    wrong = [
        (s["biz_id"], s["phone_number"], s["status"])
        for s in sends
        if s["status"] != STATUS.get(truth[(s["biz_id"], s["phone_number"])].status)
    ]
    lost_receipts = [
        s for s in sends if truth[(s["biz_id"], s["phone_number"])].receipt_fate == "lost"
    ]
    queries = [c for c in calls if c.api == "QuerySendDetails"]
    busiest = max_in_window([c.monotonic for c in queries], 1.0)
    faults = Counter(c.api.split(".")[0] for c in calls if c.fault != "none")
    token_refusals = [
        c for c in calls if c.outcome == "SecurityTokenExpired" and c.monotonic >= expired_at
    ]
    new_tokens = [
        c
        for c in calls
        if c.api == "QueryTokenForMnsQueue" and c.outcome == "OK" and c.monotonic >= expired_at
    ]
    events = Counter(e.get("event") for e in daemon.events())
    print(
        f"\nprovider faults: {SENDS} SendSms ({send_failures} failed attempts retried), "
        f"{registered} registered recipients, {len(expected)} receipts expected, "
        f"{len(keys)} stored; {len(lost_receipts)} registered sends had lost receipts, "
        f"settled by query {sum(1 for s in lost_receipts if s['settled_by'] == 'query')}; "
        f"{len(calls)} provider calls, injected faults by API {dict(faults)}; "
        f"{expired_tokens} tokens expired, {len(token_refusals)} refusals, "
        f"{len(new_tokens)} new tokens; QuerySendDetails {len(queries)} calls, busiest 1-s window "
        f"{busiest} (limit {RATE:g} + burst {burst} = {RATE + burst:g}); "
        f"events {dict((k, v) for k, v in events.items() if 'fail' in str(k))}"
    )
    assert alive_at_end and code == 0
    assert events["loop_died"] == 0 and events["compensator_cycle_failed"] == 0
    assert registered == SENDS * NUMBERS_PER_SEND == len(sends)
    assert len(keys) == len(set(keys))  # no receipt stored twice
    assert set(keys) == expected  # none lost, none invented
    assert wrong == []  # every send settled with the provider's true status
    assert lost_receipts and all(s["settled_by"] == "query" for s in lost_receipts)
    assert busiest <= RATE + burst
    assert faults["MNS"] > 0 and faults["QuerySendDetails"] > 0 and faults["SendSms"] > 0
    assert expired_tokens > 0 and token_refusals and new_tokens
