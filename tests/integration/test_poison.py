"""Poison on real databases and the real MNS SDK (issue 21).

* Dead-letter storage takes any bytes and any reason on SQLite, PostgreSQL and MariaDB.
* Values no database can take (a lone surrogate; NUL on PostgreSQL) are ``StoreWriteError``s,
  never a driver exception that would kill the loop or an "unavailable" that would stall it.
* A message that kills the consumer (a planted crash no ``except Exception`` catches: what a
  segfault or the OOM killer does to the process) is delivered again by MNS each time; after
  ``consumer_max_dequeue`` deliveries it is dead-lettered unread, and the consumer lives. The
  consumer runs in-process over the real aliyun-mns-sdk against the emulator, whose queue
  counts DequeueCount as MNS does; "the visibility timeout passes" is the emulator's
  controlled ``expire_inflight``, not a sleep.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from receiptd import domain, ports, receipt_shapes, wiring
from receiptd.cli import main
from receiptd.daemon.health import Health
from receiptd.db.models import DEAD, REPORT
from receiptd.db.store import SqlStore
from receiptd.ingest.mns.consumer import Consumer
from receiptd.testing.emulated import emulator_settings
from receiptd_emulator import Emulator
from tests.consuming import until_idle

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def _report(biz_id: str, **changes: Any) -> domain.SmsReport:
    fields = {"biz_id": biz_id, "phone_number": "13800000001", "success": True}
    fields |= {"send_time": "2026-11-25 16:00:00", **changes}
    return domain.report_from_fields(fields)


def test_dead_letter_storage_takes_any_bytes_and_any_reason(engine: sa.Engine) -> None:
    raw = b"\x00\xff\xfe" + "\ud800".encode("utf-8", "surrogatepass") + bytes(range(256))
    dead = [
        ports.DeadRecord("q", "nul-reason", raw, "refused: a\x00b"),
        ports.DeadRecord("q", "surrogate-reason", raw, "bad \ud800 \udfff here"),
        ports.DeadRecord("q", "long-reason", raw, "失败" * 50_000),
    ]
    result = SqlStore(engine).write_batch(ports.Batch(dead=dead), NOW)
    assert result.dead_new == 3
    with engine.connect() as conn:
        rows = {r.mns_message_id: r for r in conn.execute(sa.select(DEAD))}
    assert all(bytes(r.raw_body) == raw for r in rows.values())
    assert rows["nul-reason"].error == "refused: a\\x00b"
    assert rows["surrogate-reason"].error == "bad \\ud800 \\udfff here"
    assert len(rows["long-reason"].error) == 2000


def test_values_no_database_takes_are_write_errors_not_crashes(
    db_url: str, engine: sa.Engine
) -> None:
    """The domain parser rejects lone surrogates, but a record built another way must still
    be refused as data (isolated, dead-lettered), not raise the driver's UnicodeEncodeError."""
    store = SqlStore(engine)
    # Built past the parser (report_from_fields rejects it): what a parser defect would let by.
    surrogate = domain.SmsReport("s^0", "13800000001", True, NOW, err_msg="\ud800")
    with pytest.raises(ports.StoreWriteError):
        store.write_batch(ports.Batch(reports=[ports.ReportRecord("m1", surrogate)]), NOW)
    nul = ports.Batch(reports=[ports.ReportRecord("m2", _report("n^0", err_msg="a\x00b"))])
    if make_url(db_url).get_backend_name() == "postgresql":
        with pytest.raises(ports.StoreWriteError):
            store.write_batch(nul, NOW)
    else:
        assert store.write_batch(nul, NOW).reports_new == 1


class PlantedCrash(BaseException):
    """What no ``except Exception`` catches: the process dying on a body."""


def _b64(fields: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(fields).encode()).decode()


def _body(biz_id: str) -> str:
    fields = {"biz_id": biz_id, "phone_number": "13800000001", "success": True}
    return _b64({**fields, "send_time": "2026-11-25 16:00:00"})


def test_a_message_that_kills_the_consumer_is_quarantined_by_its_dequeue_count(
    db_url: str, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = receipt_shapes.parse_receipt

    def planted(raw: str | bytes, tz: Any = domain.CHINA_TZ) -> domain.SmsReport:
        if "killer" in base64.b64decode(raw).decode():
            raise PlantedCrash
        return real(raw, tz)

    monkeypatch.setattr(receipt_shapes, "parse_receipt", planted)
    store = SqlStore(engine)
    with Emulator(profile="default") as emu:
        settings = emulator_settings(emu.info, db_url)
        assert settings.consumer_max_dequeue == 5  # the default bound
        backing = emu.mns.queue(emu.info.report_queue)
        before = [emu.enqueue("report", _body(f"a{i}")) for i in range(3)]
        killer = emu.enqueue("report", _body("killer"))
        after = [emu.enqueue("report", _body(f"z{i}")) for i in range(3)]
        deaths, rounds = 0, 0
        while rounds < 10:  # a supervisor restarting the daemon each time it dies
            rounds += 1
            consumer = Consumer(
                domain.MessageType.REPORT,
                wiring.queue_factory(settings, domain.MessageType.REPORT),
                store,
                Health(),
                threads=1,
                batch_size=16,
                wait_seconds=0,
                max_dequeue=settings.consumer_max_dequeue,
            )
            until_idle(consumer)
            if consumer.failed is None:
                break
            assert isinstance(consumer.failed, PlantedCrash)
            deaths += 1
            assert backing.expire_inflight() == 7  # the batch died undeleted: MNS redelivers
        depth = emu.queue_depth("report")
    assert (deaths, rounds) == (5, 6)  # five deliveries, five deaths; the sixth: quarantine
    assert depth == {"visible": 0, "inflight": 0, "delayed": 0}
    with engine.connect() as conn:
        letters = {r.mns_message_id: r for r in conn.execute(sa.select(DEAD))}
        stored = conn.execute(sa.select(sa.func.count()).select_from(REPORT)).scalar_one()
    # The killer shared its batch with six good receipts: all seven were delivered five
    # times without being stored, so all seven are quarantined, byte for byte, unread.
    assert stored == 0
    assert set(letters) == {killer, *before, *after}
    assert bytes(letters[killer].raw_body) == _body("killer").encode()
    assert all(
        r.error.startswith("quarantined unread: delivered 6 times") for r in letters.values()
    )
    # Nothing is lost: once the defect is fixed, a replay stores every one of them.
    monkeypatch.setattr(receipt_shapes, "parse_receipt", real)
    env = {"RECEIPTD_DATABASE_URL": db_url, "RECEIPTD_ALIYUN_QUEUE_PREFIX": "x-"}
    result = CliRunner().invoke(main, ["dead-letters", "replay", "--all"], env=env)
    assert result.exit_code == 0, result.output
    with engine.connect() as conn:
        biz_ids = set(conn.execute(sa.select(REPORT.c.biz_id)).scalars())
    assert biz_ids == {"killer", "a0", "a1", "a2", "z0", "z1", "z2"}
