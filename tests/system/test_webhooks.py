"""Webhooks end to end: `receiptd run` replicas against the emulator, a real HTTP receiver that
verifies every signature with the ``standardwebhooks`` verifier, on PostgreSQL and MariaDB.

* two replicas share the outbox: every event delivered, none twice while nobody crashes;
  then ``kill -9`` of a replica with requests in flight: every event still delivered at least
  once, none invented (every received body equals an outbox row), and the only duplicates
  are the killed replica's last batch (outcomes are recorded per batch);
* an endpoint down and another answering 500 slowly: consumption is not held up, the backlog
  shows in /metrics, readiness stays green, the 500 endpoint's deliveries go dead after the
  retry period with at most ``concurrency`` requests in flight, and the down endpoint gets
  everything once it is back.
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from receiptd import domain, ports
from receiptd.db.engine import create_db_engine
from receiptd.db.models import DELIVERY, EVENT, INBOUND, SEND, Base
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd.testing.receiver import Receiver
from receiptd_emulator import Emulator
from tests.conftest import _ensure_database, drop_server_database
from tests.system.daemon import Daemon, daemon_env, free_port
from tests.system.reliability import receipt_fields, wait_for

pytestmark = pytest.mark.system

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WAVE = 240  # receipts per wave (one in nine fails)
REPLIES = 10


@pytest.fixture(scope="module", params=["postgresql", "mariadb"])
def server_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    urls: dict[str, str] = {}
    url = _ensure_database(request.param, urls, Path(tmp_path_factory.mktemp("db")))
    yield url
    drop_server_database(request.param, url)


@pytest.fixture
def engine(server_url: str) -> Iterator[sa.Engine]:
    eng = create_db_engine(server_url)
    with eng.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
    yield eng
    eng.dispose()


def _load(emu: Emulator, engine: sa.Engine, start: int, count: int, prefix: str) -> None:
    """Register ``count`` sends, then enqueue their receipts and a few replies."""
    now = datetime.now(UTC)
    fields = [receipt_fields(i, prefix) for i in range(start, start + count)]
    SendStore(SqlStore(engine)).register(
        [
            ports.NewSend(domain.Provider.ALIYUN, str(f["biz_id"]), str(f["phone_number"]), now)
            for f in fields
        ],
        now,
    )
    for f in fields:
        emu.enqueue_report(f)
    for n in range(REPLIES):
        emu.enqueue_up(
            {"phone_number": f"1370000{start + n:04d}", "content": f"回复 {prefix}{n}",
             "send_time": "20261125160000", "dest_code": "01", "sequence_id": f"{prefix}{n}"}
        )  # fmt: skip


def _changes(engine: sa.Engine) -> int:
    """Sends settled plus replies stored: the number of events there must be."""
    with engine.connect() as conn:
        settled = conn.execute(
            sa.select(sa.func.count()).select_from(SEND).where(SEND.c.status != "pending")
        ).scalar_one()
        replies = conn.execute(sa.select(sa.func.count()).select_from(INBOUND)).scalar_one()
    return int(settled) + int(replies)


def _pending(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(DELIVERY)
        return int(conn.execute(query.where(DELIVERY.c.status == "pending")).scalar_one())


def _outbox(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {r.id: r.payload for r in conn.execute(sa.select(EVENT.c.id, EVENT.c.payload))}


def _env(
    emu: Emulator, url: str, endpoints: list[dict[str, object]], **extra: str
) -> dict[str, str]:
    return daemon_env(
        emu,
        url,
        free_port(),
        RECEIPTD_WEBHOOK_ENDPOINTS=json.dumps(endpoints),
        RECEIPTD_WEBHOOK_BACKOFF_INITIAL="0.2",
        RECEIPTD_WEBHOOK_BACKOFF_MAX="1",
        RECEIPTD_WEBHOOK_POLL_INTERVAL="0.1",
        **extra,
    )


def _endpoint(name: str, url: str, **kw: object) -> dict[str, object]:
    return {"name": name, "url": url, "secret": SECRET, **kw}


def _metric(daemon: Daemon, name: str, endpoint: str) -> float:
    _, body = daemon.get("/metrics")
    match = re.search(rf'^{name}{{endpoint="{endpoint}"}} (\S+)$', body.decode(), re.M)
    return float(match.group(1)) if match else -1.0


@pytest.mark.timeout(180)
def test_replicas_and_kill_9_deliver_every_event_none_invented(
    engine: sa.Engine, server_url: str, tmp_path: Path
) -> None:
    with Emulator(profile="default") as emu, Receiver(SECRET, delay=0.01) as receiver:
        emu.set_queue_attributes("report", visibility_timeout=3)
        hook = _endpoint("app", receiver.url, timeout=1, concurrency=4)
        env = _env(emu, server_url, [hook], RECEIPTD_WEBHOOK_BATCH_SIZE="8")
        replicas = [Daemon({**env, "RECEIPTD_HTTP_ADDR": f"127.0.0.1:{free_port()}"},
                           tmp_path / f"replica-{n}.log") for n in range(2)]  # fmt: skip
        try:
            for r in replicas:
                r.wait_until(r.ready, timeout=30)
            # Wave 1: both replicas running, nobody crashes.
            _load(emu, engine, 0, WAVE, "5")
            wait_for(lambda: receiver.unique() >= WAVE + REPLIES, 60, "wave 1 delivered")
            assert _changes(engine) == WAVE + REPLIES
            assert receiver.duplicates() == 0
            # Wave 2: one replica left (the other stops cleanly); kill -9 it while requests are
            # in flight (a slower receiver keeps them so): those are received but never
            # recorded as delivered, so they come again from the restarted replicas.
            assert replicas[1].terminate()[0] == 0
            receiver.delay = 0.05
            _load(emu, engine, WAVE, WAVE, "6")
            wait_for(
                lambda: receiver.unique() >= WAVE + REPLIES + 40 and receiver.in_flight > 0,
                60,
                "wave 2 flowing",
            )
            replicas[0].proc.send_signal(signal.SIGKILL)
            replicas[0].kill()  # reaps it, closes its log
            receiver.delay = 0.0
            replicas = [
                Daemon({**env, "RECEIPTD_HTTP_ADDR": f"127.0.0.1:{free_port()}"},
                       tmp_path / f"replica-{n}-again.log")
                for n in range(2)
            ]  # fmt: skip
            total = 2 * (WAVE + REPLIES)
            wait_for(lambda: receiver.unique() >= total, 60, "wave 2 delivered")
            wait_for(lambda: _changes(engine) == total, 30, "every change committed")
            # The killed replica's claim comes due again at the end of its lease.
            wait_for(lambda: _pending(engine) == 0, 30, "every delivery recorded")
        finally:
            for r in replicas:
                r.kill()
        stored = _outbox(engine)
        assert receiver.rejected == 0
        assert len(stored) == total == _changes(engine)  # one event per committed change
        assert set(receiver.events) == set(stored)  # every event delivered, none invented
        for event_id, payload in receiver.events.items():
            assert payload == json.loads(stored[event_id])
        by_type = receiver.by_type()
        assert by_type["reply.received"] == 2 * REPLIES
        assert by_type["send.delivered"] + by_type["send.failed"] == 2 * WAVE
        # Duplicates come only from the killed replica's requests in flight (≤ its batch of 8);
        # there were some, so the kill did land mid-delivery.
        assert 1 <= receiver.duplicates() <= 8
        print(f"\nwebhooks kill -9 ({engine.dialect.name}): {total} events, "
              f"{receiver.duplicates()} duplicates after the crash")  # fmt: skip


@pytest.mark.timeout(120)
def test_down_and_failing_endpoints_never_hold_up_consumption(
    engine: sa.Engine, server_url: str, tmp_path: Path
) -> None:
    with Emulator(profile="default") as emu, Receiver(SECRET, status=500, delay=0.05) as bad:
        down = Receiver(SECRET).start()
        down.stop()  # its port is known, nothing listens yet
        env = _env(
            emu,
            server_url,
            [
                _endpoint("down", down.url, timeout=1),
                _endpoint("bad", bad.url, concurrency=2, retry_period=3),
            ],
        )
        daemon = Daemon(env, tmp_path / "daemon.log")
        try:
            daemon.wait_until(daemon.ready, timeout=30)
            _load(emu, engine, 0, WAVE, "8")
            events = WAVE + REPLIES
            # Consumption settles everything while no webhook has gone through.
            wait_for(lambda: _changes(engine) == events, 30, "all consumed", alive=_alive(daemon))
            assert down.unique() == 0 and bad.unique() == 0
            assert daemon.get("/readyz")[0] == 200
            wait_for(lambda: _metric(daemon, "receiptd_events_pending", "down") == events, 15,
                     "backlog in /metrics")  # fmt: skip
            wait_for(lambda: _metric(daemon, "receiptd_events_oldest_pending_seconds", "down") >= 1,
                     15, "oldest pending age in /metrics")  # fmt: skip
            # The 500 endpoint: retried for 3 s, then dead; never more than 2 requests at once.
            wait_for(lambda: _dead(daemon) == events, 60, "bad endpoint's deliveries dead")
            assert bad.max_in_flight <= 2 and bad.requests >= events
            # The down endpoint comes back: everything arrives.
            down.start()
            wait_for(lambda: down.unique() == events, 60, "backlog delivered after recovery")
            wait_for(lambda: _metric(daemon, "receiptd_events_pending", "down") == 0, 15,
                     "backlog gone")  # fmt: skip
            assert down.rejected == 0
            code, _ = daemon.terminate()
            assert code == 0
        finally:
            daemon.kill()
            down.close()


def _alive(daemon: Daemon):  # type: ignore[no-untyped-def]
    def check() -> None:
        if daemon.proc.poll() is not None:
            raise AssertionError(f"receiptd exited {daemon.proc.returncode}:\n{daemon.log()}")

    return check


def _dead(daemon: Daemon) -> int:
    _, body = daemon.get("/metrics")
    found = re.findall(
        r'^receiptd_events_total{[^}]*result="dead"[^}]*} (\S+)$', body.decode(), re.M
    )
    return int(sum(float(v) for v in found))
