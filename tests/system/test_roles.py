"""Split roles: a `receiptd run --roles consumer` and a `receiptd run --roles worker` on one
PostgreSQL database, each with its own ops port (docs/operations.md "Roles").

The consumer process stores every receipt and never compensates; the worker settles every
send whose receipt was lost and consumes nothing. Each /readyz lists its own roles and each
/metrics its receiptd_role_info. The worker stopped, the consumer goes on storing.
"""

from __future__ import annotations

import json
import re
import signal
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
from tests.system.reliability import Db, queue_total, receipt_fields

pytestmark = pytest.mark.system

RECEIPTS = 300
LOST = 40  # sends whose receipts never come: only the worker can settle them


@pytest.fixture
def db(pg_url: str) -> Iterator[Db]:
    handle = Db(pg_url)
    yield handle
    handle.close()


def _register_lost_sends(emu: Emulator, pg_url: str) -> None:
    sent = datetime.now(UTC) - timedelta(minutes=10)
    seeds = [
        SeedSend(
            phone=f"136{n:08d}",
            sign_name=emu.info.sign_name,
            template_code=emu.info.template_code,
            out_id=f"lost{n}",
            send_time=sent,
            outcome="delivered",
            receipt="lost",
        )
        for n in range(LOST)
    ]
    engine = create_db_engine(pg_url)
    try:
        store = SendStore(SqlStore(engine), domain.CHINA_TZ)
        for biz_id, seed in zip(emu.seed_sends(seeds), seeds, strict=True):
            api.register_send(store, biz_id=biz_id, phone_numbers=seed.phone, sent_at=sent)
    finally:
        engine.dispose()


def _roles_of(daemon: Daemon) -> dict[str, bool]:
    _status, body = daemon.get("/readyz")
    return {role: state["ok"] for role, state in json.loads(body)["roles"].items()}


def _role_info(daemon: Daemon) -> set[str]:
    text = daemon.get("/metrics")[1].decode()
    return set(re.findall(r'^receiptd_role_info\{role="(\w+)"\} 1\.0$', text, re.M))


def _run_replicas(pg_url: str) -> set[str]:
    engine = create_db_engine(pg_url)
    try:
        with engine.connect() as conn:
            return {str(r) for r in conn.execute(sa.select(RUN.c.replica)).scalars()}
    finally:
        engine.dispose()


@pytest.mark.timeout(240)
def test_consumer_and_worker_in_their_own_processes(pg_url: str, db: Db, tmp_path: Path) -> None:
    with Emulator(profile="default") as emu:
        _register_lost_sends(emu, pg_url)
        for i in range(RECEIPTS):
            emu.enqueue_report(receipt_fields(i))
        env = daemon_env(emu, pg_url, 0, RECEIPTD_COMPENSATOR_GRACE="60")
        consumer = Daemon(
            env | {"RECEIPTD_HTTP_ADDR": f"127.0.0.1:{free_port()}"},
            tmp_path / "consumer.log",
            "--roles",
            "consumer",
        )
        worker = Daemon(
            env | {"RECEIPTD_HTTP_ADDR": f"127.0.0.1:{free_port()}", "RECEIPTD_ROLES": "worker"},
            tmp_path / "worker.log",
        )
        try:
            consumer.wait_until(
                lambda: (
                    db.report_rows() >= RECEIPTS
                    and all(s["status"] != "pending" for s in db.sends())
                ),
                timeout=180,
            )
            consumer.wait_until(consumer.ready, 30)
            worker.wait_until(worker.ready, 30)
            assert _roles_of(consumer) == {"consumer": True}
            assert _roles_of(worker) == {"compensator": True, "prune": True}
            assert _role_info(consumer) == {"consumer"}
            assert _role_info(worker) == {"compensator", "prune"}
            worker_pid = worker.proc.pid
            code, _ = worker.terminate(signal.SIGTERM)
            assert code == 0
            # The consumer goes on alone.
            for i in range(RECEIPTS, RECEIPTS + 50):
                emu.enqueue_report(receipt_fields(i))
            consumer.wait_until(lambda: db.report_rows() >= RECEIPTS + 50, timeout=60)
            assert consumer.proc.poll() is None
            assert queue_total(emu) == 0
            consumer_code, _ = consumer.terminate(signal.SIGTERM)
        finally:
            consumer.kill()
            worker.kill()
        receives = [c for c in emu.calls("MNS.BatchReceiveMessage") if c.status == 200]
        queries = emu.calls("QuerySendDetails")

    assert consumer_code == 0
    assert receives, "the consumer received"
    assert len(queries) == LOST  # the worker asked once for each lost send, nobody else
    replicas = _run_replicas(pg_url)
    assert replicas and all(r.endswith(f":{worker_pid}") for r in replicas), replicas
    starting = [e for e in consumer.events() if e.get("event") == "service_starting"]
    assert starting and starting[0]["roles"] == ["consumer"]
    assert not [e for e in consumer.events() if str(e.get("event", "")).startswith("compens")]
    assert "consumer." not in worker.log()
