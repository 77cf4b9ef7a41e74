"""Every spec field of SmsReport and SmsUp lands in its column, through MNS and the consumer."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from receiptd import domain, wiring
from receiptd.daemon.health import Health
from receiptd.db.models import INBOUND, REPORT
from receiptd.db.store import SqlStore
from receiptd.ingest.mns.consumer import Consumer
from receiptd.testing.emulated import emulator_settings
from receiptd_emulator.emulator import Emulator
from tests.consuming import until_idle

REPORT_BODY = {
    "phone_number": "13000000000",
    "success": False,
    "biz_id": "1234^345",
    "out_id": "订单-123456",
    "send_time": "2017-06-01 10:00:00",
    "report_time": "2017-06-01 10:00:05",
    "err_code": "UNKNOW",
    "err_msg": "未知异常 ✓ 😀",
    "sms_size": "3",
}
REPORT_COLUMNS = [  # (column, expected value)
    ("phone_number", "13000000000"),
    ("success", False),
    ("biz_id", "1234^345"),
    ("out_id", "订单-123456"),
    ("send_time", datetime(2017, 6, 1, 2, 0, 0, tzinfo=UTC)),
    ("report_time", datetime(2017, 6, 1, 2, 0, 5, tzinfo=UTC)),
    ("err_code", "UNKNOW"),
    ("err_msg", "未知异常 ✓ 😀"),
    ("sms_size", 3),
]
UP_BODY = {
    "phone_number": "13000000000",
    "content": "退订 TD 😀\n第二行",
    "send_time": "20150101120000",
    "dest_code": "123456",
    "sequence_id": "654321",
}
UP_COLUMNS = [
    ("phone_number", "13000000000"),
    ("content", "退订 TD 😀\n第二行"),
    ("send_time", datetime(2015, 1, 1, 4, 0, 0, tzinfo=UTC)),
    ("dest_code", "123456"),
    ("sequence_id", "654321"),
]


def consume_one(engine: sa.Engine, kind: domain.MessageType, body: dict[str, object]) -> None:
    with Emulator(profile="default") as emu:
        queue = "report" if kind is domain.MessageType.REPORT else "up"
        message_id = emu.enqueue(queue, domain.encode_body(body))
        settings = emulator_settings(emu.info, str(engine.url))
        consumer = Consumer(
            kind,
            wiring.queue_factory(settings, kind),
            SqlStore(engine),
            Health(),
            threads=1,
            batch_size=16,
            wait_seconds=0,  # the message is already visible: no need to long-poll
            tz=settings.timezone,
        )
        stats = until_idle(consumer)
        assert (stats.stored, stats.deleted) == (1, 1)
        table = REPORT if kind is domain.MessageType.REPORT else INBOUND
        with engine.connect() as conn:
            row = conn.execute(sa.select(table)).one()
        assert row.mns_message_id == message_id


def row_of(engine: sa.Engine, table: sa.Table) -> sa.Row[object]:
    with engine.connect() as conn:
        return conn.execute(sa.select(table)).one()


@pytest.mark.parametrize(("column", "expected"), REPORT_COLUMNS)
def test_report_field_lands_in_its_column(engine: sa.Engine, column: str, expected: object) -> None:
    consume_one(engine, domain.MessageType.REPORT, REPORT_BODY)
    assert getattr(row_of(engine, REPORT), column) == expected


@pytest.mark.parametrize(("column", "expected"), UP_COLUMNS)
def test_up_field_lands_in_its_column(engine: sa.Engine, column: str, expected: object) -> None:
    consume_one(engine, domain.MessageType.UP, UP_BODY)
    assert getattr(row_of(engine, INBOUND), column) == expected
