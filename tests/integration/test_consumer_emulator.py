"""The consumer through the real aliyun-mns-sdk and Dybaseapi client against the emulator,
into SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from mns.account import Account

from receiptd import domain, ports, wiring
from receiptd.cli import main
from receiptd.config import Settings
from receiptd.daemon.health import Health
from receiptd.db.models import DEAD, REPORT, SEND
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd.ingest.mns.consumer import Backoff, Consumer, ConsumeStats
from receiptd.testing.emulated import emulator_settings
from receiptd_emulator.clock import ManualClock
from receiptd_emulator.emulator import Emulator
from receiptd_emulator.faults import FaultSpec
from tests.consuming import until_idle
from tests.system.reliability import wait_for

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
# Full size on PostgreSQL; SQLite and MariaDB take a fifth to keep CI time reasonable.
SIZES = {"postgresql": 10_000, "sqlite": 2_000, "mariadb": 2_000}


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(profile="default", token_lifetime=3600.0) as emulator:
        yield emulator


def backend(engine: sa.Engine) -> str:
    return "mariadb" if engine.dialect.name == "mysql" else engine.dialect.name


def fields(i: int, success: bool = True) -> dict[str, object]:
    return {
        "biz_id": f"{100000 + i}^0",
        "phone_number": f"138{i:08d}",
        "success": success,
        "send_time": "2026-11-25 16:00:00",
        "report_time": "2026-11-25 16:00:05",
        "err_code": "DELIVERED" if success else "MK:0001",
        "err_msg": "用户接收成功" if success else "失败",
        "sms_size": "1",
    }


def short_visibility(emu: Emulator, seconds: int = 2) -> None:
    """Reset-after-effect faults leave messages in flight; let them come back quickly.

    (The emulator has no public setter for queue attributes; QueueMeta is replaced directly.)
    """
    for name in ("report", "up"):
        queue = emu.mns.queue(emu.queue_name(name))
        queue.meta = dataclasses.replace(queue.meta, visibility_timeout=seconds)


def consume(
    settings: Settings, sink: ports.ReceiptSink, threads: int = 4, rounds: int = 1
) -> ConsumeStats:
    """Run until idle; with ``rounds`` > 1 again while redeliveries may still be due."""
    total = ConsumeStats()
    for _ in range(rounds):
        c = Consumer(
            domain.MessageType.REPORT,
            wiring.queue_factory(settings, domain.MessageType.REPORT),
            sink,
            Health(),
            threads=threads,
            batch_size=16,
            wait_seconds=settings.consumer_wait_seconds,
            tz=settings.timezone,
            backoff=Backoff(base=0.05, cap=0.5),
        )
        total.add(until_idle(c))
        assert c.failed is None
    return total


def depth(emu: Emulator) -> int:
    return sum(emu.queue_depth("report").values())


def load_mixed(emu: Emulator, size: int, seed: int = 1) -> tuple[set[str], dict[str, str]]:
    """Unique receipts + 10 % duplicates + 5 % malformed, in shuffled (out-of-order) order.

    Returns the expected biz ids and the malformed bodies by message id.
    """
    rng = random.Random(seed)
    unique = int(size * 0.85)
    bodies = [domain.encode_body(fields(i, success=i % 7 != 0)) for i in range(unique)]
    bodies += rng.sample(bodies, size // 10)  # duplicates (same receipt delivered twice)
    bad_count = size - len(bodies)
    bad = [f"bad-{n}" for n in range(bad_count)]
    order = [("ok", b) for b in bodies] + [("bad", b) for b in bad]
    rng.shuffle(order)
    malformed: dict[str, str] = {}
    for kind, body in order:
        if kind == "ok":
            emu.enqueue("report", body)
        else:
            real = emu.inject_malformed("report") if rng.random() < 0.5 else body
            if real == body:
                emu.enqueue("report", body)
            malformed[body] = real
    return {f"{100000 + i}^0" for i in range(unique)}, malformed


def assert_stored_exactly(engine: sa.Engine, expected: set[str], malformed: dict[str, str]) -> None:
    with engine.connect() as conn:
        biz = [r.biz_id for r in conn.execute(sa.select(REPORT.c.biz_id))]
        dead = list(conn.execute(sa.select(DEAD.c.raw_body, DEAD.c.error)))
    assert len(biz) == len(set(biz)) == len(expected)
    assert set(biz) == expected
    assert sorted(bytes(d.raw_body).decode() for d in dead) == sorted(malformed.values())
    assert all(d.error for d in dead)


def test_mixed_load_stores_exactly_the_expected_rows(emu: Emulator, engine: sa.Engine) -> None:
    size = SIZES[backend(engine)]
    expected, malformed = load_mixed(emu, size)
    settings = emulator_settings(emu.info, str(engine.url))
    stats = consume(settings, SqlStore(engine))
    assert_stored_exactly(engine, expected, malformed)
    assert depth(emu) == 0
    assert stats.received == size
    assert stats.dead_letters == len(malformed)
    assert stats.stored + stats.duplicates == size - len(malformed)
    if backend(engine) != "mariadb":  # its insert count is racy under concurrent duplicates
        assert stats.stored == len(expected)


class ExpiringSink(SqlStore):
    """After every ``every`` batches the tokens expire, alternately by the emulator's clock
    passing their lifetime (a ManualClock moved by the sink) and revoked early
    (``expire_tokens``): a run meets both the same number of times on any machine."""

    def __init__(self, engine: sa.Engine, emu: Emulator, clock: ManualClock, every: int) -> None:
        super().__init__(engine)
        self.emu, self.clock, self.every = emu, clock, every
        self.batches = self.expiries = 0

    def write_batch(self, batch: ports.Batch, now: datetime) -> ports.BatchResult:
        result = super().write_batch(batch, now)
        self.batches += 1
        if self.batches % self.every == 0:
            self.expiries += 1
            if self.expiries % 2:
                self.clock.advance(self.emu.token_lifetime)
            else:
                self.emu.expire_tokens()
        return result


def test_token_expiry_mid_run_loses_nothing(engine: sa.Engine) -> None:
    """Expiry is driven by the batches, not by real time: with a real 5 s lifetime, how many
    tokens expired (and where) depended on the machine's speed. The client's cache reads a
    one-hour ExpireTime and never refreshes ahead during the run, so every expiry is met as
    an auth error: refreshed at once, nothing lost."""
    clock = ManualClock()
    with Emulator(profile="default", token_lifetime=3600.0, clock=clock) as emu:
        expected, malformed = load_mixed(emu, 600, seed=2)
        settings = emulator_settings(emu.info, str(engine.url))
        sink = ExpiringSink(engine, emu, clock, every=5)
        stats = consume(settings, sink, threads=2)
        assert_stored_exactly(engine, expected, malformed)
        assert depth(emu) == 0
        refused = [c for c in emu.calls("MNS.BatchReceiveMessage") if c.status == 403]
        refused += [c for c in emu.calls("MNS.BatchDeleteMessage") if c.status == 403]
        assert sink.expiries >= 6
        assert len(refused) >= sink.expiries  # each expiry met by the next call, at least
        assert len(emu.calls("QueryTokenForMnsQueue")) >= sink.expiries + 1
        assert stats.received >= 600


def test_ten_percent_mns_faults_lose_and_duplicate_nothing(
    emu: Emulator, engine: sa.Engine
) -> None:
    size = SIZES[backend(engine)] // 2
    expected, malformed = load_mixed(emu, size, seed=3)
    short_visibility(emu)
    emu.set_faults(
        "mns",
        FaultSpec(error_rate=0.04, reset_rate=0.04, latency=0.3, latency_rate=0.02, seed=11),
    )
    settings = emulator_settings(emu.info, str(engine.url))
    for _ in range(10):  # reset-after-effect receives come back after the visibility timeout
        consume(settings, SqlStore(engine), rounds=1)
        if depth(emu) == 0:
            break
        # Wait for what a reset left in flight to be visible again (2 s): a round that finds
        # the queue empty ends at once, so ten of them could pass within the timeout.
        wait_for(lambda: emu.queue_depth("report")["inflight"] == 0, 30, "in flight: back")
    mns_calls = [c for c in emu.calls() if c.api.startswith("MNS.")]
    faults = {c.fault for c in mns_calls if c.fault != "none"}
    assert {"error", "reset_before", "reset_after"} <= faults
    assert_stored_exactly(engine, expected, malformed)
    assert depth(emu) == 0


def test_receipt_before_send_registration_is_linked(emu: Emulator, engine: sa.Engine) -> None:
    emu.enqueue_report(fields(1, success=False))
    store = SqlStore(engine)
    consume(emulator_settings(emu.info, str(engine.url)), store, threads=1)
    send = ports.NewSend(domain.Provider.ALIYUN, "100001^0", "13800000001", NOW)
    SendStore(store).register([send], NOW)
    with engine.connect() as conn:
        row = conn.execute(sa.select(SEND)).one()
    assert (row.status, row.settled_by, row.err_code) == ("failed", "receipt", "MK:0001")


def cli_env(emu: Emulator, engine: sa.Engine) -> dict[str, str]:
    """`receiptd consume` in token mode against the emulator, with a 1 s long poll."""
    return {
        "RECEIPTD_DATABASE_URL": str(engine.url.render_as_string(hide_password=False)),
        "RECEIPTD_ALIYUN_ACCESS_KEY_ID": emu.info.access_key_id,
        "RECEIPTD_ALIYUN_ACCESS_KEY_SECRET": emu.info.access_key_secret,
        "RECEIPTD_ALIYUN_QUEUE_PREFIX": emu.info.queue_prefix,
        "RECEIPTD_ALIYUN_ALICOM_MNS_ENDPOINT": emu.info.mns_endpoint,
        "RECEIPTD_ALIYUN_DYBASE_ENDPOINT": emu.info.dybase_endpoint,
        "RECEIPTD_CONSUMER_WAIT_SECONDS": "1",
    }


# The CLI path is the same on every backend: SQLite is enough here.
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_cli_consume_until_idle(emu: Emulator, engine: sa.Engine) -> None:
    emu.enqueue_report(fields(1))
    emu.inject_malformed("report")
    emu.enqueue_up(
        {"phone_number": "13800000001", "content": "退订", "send_time": "20261125160000",
         "dest_code": "01", "sequence_id": "1"}
    )  # fmt: skip
    result = CliRunner().invoke(main, ["consume", "--until-idle"], env=cli_env(emu, engine))
    assert result.exit_code == 0, result.output
    assert "received=3 stored=2" in result.output
    assert "dead_letters=1" in result.output
    assert depth(emu) == 0 and sum(emu.queue_depth("up").values()) == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_cli_until_idle_drains_what_is_visible_not_what_another_consumer_holds(
    emu: Emulator, engine: sa.Engine
) -> None:
    """Another client (the real SDK) holds a batch in flight: `consume --until-idle` stores
    the rest and exits instead of waiting out the visibility timeout (docs/consumer.md)."""
    for i in range(40):
        emu.enqueue_report(fields(i))
    account = Account(
        emu.info.mns_endpoint, emu.info.mns_owner_access_key_id,
        emu.info.mns_owner_access_key_secret,
    )  # fmt: skip
    holder = account.get_queue(emu.info.report_queue)
    holder.set_encoding(False)
    held = holder.batch_receive_message(16)
    command = ["consume", "--until-idle", "--queue", "report"]
    result = CliRunner().invoke(main, command, env=cli_env(emu, engine))
    assert result.exit_code == 0, result.output
    assert "received=24 stored=24" in result.output and "deleted=24" in result.output
    assert emu.queue_depth("report") == {"visible": 0, "inflight": 16, "delayed": 0}
    holder.batch_delete_message([m.receipt_handle for m in held])  # the holder's own work
    account.mns_client.close_connection()
    assert depth(emu) == 0


def test_cli_consume_exits_3_when_not_migrated(tmp_path: object, emu: Emulator) -> None:
    env = {
        "RECEIPTD_DATABASE_URL": f"sqlite:///{tmp_path}/empty.db",
        "RECEIPTD_ALIYUN_ACCESS_KEY_ID": emu.info.access_key_id,
    }
    result = CliRunner().invoke(main, ["consume", "--until-idle"], env=env)
    assert result.exit_code == 3
