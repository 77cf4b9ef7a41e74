"""Three replicas on the same queues and the same PostgreSQL database, under load.

Receipts (with duplicates) are consumed by all three at once; 3,000 registered sends whose
receipts were lost are settled by the three compensators, whose first cycles run at the same
time. Every receipt is stored once, every send settled with the provider's status, and no send
is queried twice: every send is final at its first query (sent 10 minutes ago), so one query
per send in total is the exact expectation, and any second query would be a duplicate.
"""

from __future__ import annotations

import random
import signal
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from receiptd import api, domain
from receiptd.db.engine import create_db_engine
from receiptd.db.models import RUN
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd_emulator import Emulator, SeedSend
from tests.system.daemon import Daemon, daemon_env, free_port
from tests.system.reliability import Db, queue_total, receipt_fields, receipt_key

pytestmark = pytest.mark.system

REPLICAS = 3
UNIQUE = 11_000
DUPLICATES = 1_000
SENDS = 3_000  # lost receipts: only the compensators can settle them
RATE = 100.0  # per replica
SEED = 31


@pytest.fixture
def db(pg_url: str) -> Iterator[Db]:
    handle = Db(pg_url)
    yield handle
    handle.close()


def _seed_and_register(emu: Emulator, pg_url: str) -> dict[str, str]:
    """Sends made 10 minutes ago whose receipts never come; returns BizId -> final status."""
    sent = datetime.now(UTC) - timedelta(minutes=10)
    rng = random.Random(SEED)
    seeds = [
        SeedSend(
            phone=f"135{n:08d}",
            sign_name=emu.info.sign_name,
            template_code=emu.info.template_code,
            out_id=f"r{n}",
            send_time=sent,
            outcome="failed" if rng.random() < 0.1 else "delivered",
            receipt="lost",
        )
        for n in range(SENDS)
    ]
    biz_ids = emu.seed_sends(seeds)
    engine = create_db_engine(pg_url)
    try:
        store = SendStore(SqlStore(engine), domain.CHINA_TZ)
        for biz_id, seed in zip(biz_ids, seeds, strict=True):
            api.register_send(
                store, biz_id=biz_id, phone_numbers=seed.phone, sent_at=sent, out_id=seed.out_id
            )
    finally:
        engine.dispose()
    return {b: s.outcome for b, s in zip(biz_ids, seeds, strict=True)}


def _runs(pg_url: str) -> list[dict[str, object]]:
    engine = create_db_engine(pg_url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(RUN))]
    finally:
        engine.dispose()


@pytest.mark.timeout(400)
def test_three_replicas_store_exactly_and_never_query_a_send_twice(
    pg_url: str, db: Db, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    with Emulator(profile="default") as emu:
        emu.set_queue_attributes("report", visibility_timeout=5)
        truth = _seed_and_register(emu, pg_url)
        order = list(range(UNIQUE)) + rng.sample(range(UNIQUE), DUPLICATES)
        rng.shuffle(order)
        for i in order:
            emu.enqueue_report(receipt_fields(i))
        env = daemon_env(
            emu,
            pg_url,
            0,
            RECEIPTD_COMPENSATOR_INTERVAL="3600",  # exactly one cycle each, 5 s after start
            RECEIPTD_COMPENSATOR_GRACE="60",
            RECEIPTD_COMPENSATOR_BATCH_SIZE="50",  # many claims: the replicas interleave
            RECEIPTD_COMPENSATOR_RATE_LIMIT=str(RATE),
        )
        daemons = []
        try:
            for n in range(REPLICAS):
                env["RECEIPTD_HTTP_ADDR"] = f"127.0.0.1:{free_port()}"
                daemons.append(Daemon(dict(env), tmp_path / f"replica-{n}.log"))
            daemons[0].wait_until(
                lambda: (
                    db.report_rows() >= UNIQUE
                    and queue_total(emu) == 0
                    and all(s["status"] != "pending" for s in db.sends())
                ),
                timeout=300,
            )
            codes = [d.terminate(signal.SIGTERM)[0] for d in daemons]
        finally:
            for d in daemons:
                d.kill()
        queries = emu.calls("QuerySendDetails")
        deliveries = emu.calls("MNS.BatchReceiveMessage")

    keys = db.report_keys()
    sends = {s["biz_id"]: s for s in db.sends()}
    per_send = Counter(c.params.get("BizId") for c in queries)
    repeated = {b: n for b, n in per_send.items() if n > 1}
    runs = _runs(pg_url)
    claimed = Counter()
    for run in runs:
        claimed[run["replica"]] += int(run["claimed"] or 0)
    consumers = Counter(c.access_key_id for c in deliveries if c.status == 200)
    print(
        f"\nmulti-replica: {REPLICAS} replicas, {UNIQUE + DUPLICATES} receipts ({UNIQUE} unique) "
        f"-> {len(keys)} rows; {SENDS} lost-receipt sends -> {len(queries)} QuerySendDetails "
        f"calls, {len(repeated)} sends queried more than once; claims per replica "
        f"{sorted(claimed.values())}; {len(runs)} compensator runs"
    )
    assert codes == [0] * REPLICAS
    assert len(keys) == len(set(keys)) == UNIQUE
    assert set(keys) == {receipt_key(i) for i in range(UNIQUE)}
    assert {b: s["status"] for b, s in sends.items()} == truth
    assert all(s["settled_by"] == "query" for s in sends.values())
    assert repeated == {}  # no send asked twice, in one cycle or across replicas
    assert set(per_send) == set(truth)  # and every send asked once
    assert len(claimed) == REPLICAS and all(claimed.values())  # all three shared the work
    assert sum(claimed.values()) == SENDS
    assert len(consumers) >= REPLICAS  # every replica (its own queue token) received receipts
