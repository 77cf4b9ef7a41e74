"""Three `receiptd run` replicas against an emulator that caps MNS long polls at 2 per queue.

Idle: every replica holds at most one long poll per queue, the one the cap leaves out backs
off instead of spinning, so each (replica, queue) stays within the rate bound of one held long
poll (2 x window / wait, plus the refusal backoff's ramp). Then a burst arrives and is
consumed by the crews that wake (several receives of one replica in flight at once), and a
SIGTERM does not wait for the idle long polls.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from receiptd_emulator import Emulator
from receiptd_emulator.calls import RecordedCall
from receiptd_emulator.profiles import Profile
from tests.system.daemon import Daemon, daemon_env, free_port
from tests.system.reliability import Db, queue_total, receipt_fields

pytestmark = pytest.mark.system

REPLICAS = 3
CAP = 2  # concurrent long polls per queue: one replica per queue is always left out
WAIT = 5  # RECEIPTD_CONSUMER_WAIT_SECONDS
IDLE_WINDOW = 15.0
RAMP = 3  # refusal backoff: [0.5, 1] s, [1, 2] s, then [W/2, W]: a few extra requests at most
BURST = 4_000


@pytest.fixture
def db(pg_url: str) -> Iterator[Db]:
    handle = Db(pg_url)
    yield handle
    handle.close()


def max_concurrent(calls: list[RecordedCall]) -> int:
    edges = sorted(
        [(c.monotonic, 1) for c in calls] + [(c.monotonic + c.duration, -1) for c in calls]
    )
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


@pytest.mark.timeout(120)
def test_replicas_respect_the_long_poll_cap_idle_and_drain_a_burst(
    pg_url: str, db: Db, tmp_path: Path
) -> None:
    profile = Profile.load("default").with_overrides(long_polls_per_queue=CAP)
    with Emulator(profile=profile) as emu:
        env = daemon_env(emu, pg_url, 0, RECEIPTD_CONSUMER_WAIT_SECONDS=str(WAIT))
        daemons = []
        try:
            for n in range(REPLICAS):
                env["RECEIPTD_HTTP_ADDR"] = f"127.0.0.1:{free_port()}"
                daemons.append(Daemon(dict(env), tmp_path / f"replica-{n}.log"))
            for d in daemons:
                d.wait_until(d.ready, timeout=60)

            # --- idle ------------------------------------------------------------------
            emu.reset_calls()
            time.sleep(IDLE_WINDOW)  # the quantity measured is a rate over real time
            idle = emu.calls("MNS.BatchReceiveMessage")
            polls = emu.long_polls()

            # --- burst -----------------------------------------------------------------
            emu.reset_calls()
            started = time.monotonic()
            for i in range(BURST):
                emu.enqueue_report(receipt_fields(i, prefix="8"))
            daemons[0].wait_until(
                lambda: db.report_rows() >= BURST and queue_total(emu) == 0, timeout=60
            )
            drained = time.monotonic() - started
            burst = emu.calls("MNS.BatchReceiveMessage")
            emu.reset_calls()
            stops = [d.terminate(signal.SIGTERM) for d in daemons]
        finally:
            for d in daemons:
                d.kill()

    # The rate under the cap is the leaders' long polls. Every worker's one first receive
    # (wait 0) comes before its replica is ready: readiness waits for every consumer loop,
    # also those not yet started when /readyz is asked (it once passed on the loops started
    # so far, and a replica still starting its crew in the window showed 7 + 7 = 14 "polls",
    # or 8 first receives; tests/unit/ingest/mns/test_consumer.py pins the readiness).
    per_key = Counter(c.access_key_id for c in idle if c.params.get("waitseconds") == str(WAIT))
    first_receives = [c for c in idle if c.params.get("waitseconds") == "0"]
    refused = [c for c in idle if c.params.get("waitseconds") == str(WAIT) and c.duration < 1]
    bound = 2 * IDLE_WINDOW / WAIT + RAMP
    in_burst = Counter(c.access_key_id for c in burst if c.status == 200)
    crew = max(max_concurrent([c for c in burst if c.access_key_id == k]) for k in in_burst)
    # Only woken helpers receive without a wait (a leader's first poll was before the burst).
    helpers = [c for c in burst if c.params.get("waitseconds") == "0" and c.status == 200]
    print(
        f"\nlong-poll cap {CAP}/queue, {REPLICAS} replicas x 2 queues, wait {WAIT} s: "
        f"{len(idle)} receives in {IDLE_WINDOW:.0f} s idle (per replica+queue "
        f"{sorted(per_key.values())}, bound {bound:.0f}; {len(refused)} refused; emulator "
        f"peak {polls['peak']}); burst of {BURST} drained in {drained:.2f} s "
        f"({BURST / drained:.0f}/s), {len(helpers)} batches received by woken helpers, at most "
        f"{crew} receives of one replica in flight at once; "
        f"SIGTERM exits {[round(s, 2) for _, s in stops]} s"
    )
    assert len(per_key) == REPLICAS * 2  # every replica polled both queues (own tokens)
    assert max(per_key.values()) <= bound
    assert first_receives == []  # all before readiness
    assert max(per_key.values()) <= IDLE_WINDOW  # the capped state: at most 1 request/s
    assert refused  # the cap was in force and the left-out replicas backed off
    assert all(n <= CAP for n in polls["peak"].values())
    assert helpers  # the crew woke: helpers joined the long-polling leaders
    assert db.report_rows() == BURST
    assert [code for code, _ in stops] == [0] * REPLICAS
    assert all(seconds < WAIT for _, seconds in stops)  # no wait for the idle long polls
