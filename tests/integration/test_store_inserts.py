"""The batch insert statements on every backend: exact values, in-batch duplicates, refusals.

On PostgreSQL a batch travels as one JSON document (``json_to_recordset``); these pin that it
stores exactly what a plain INSERT would, and refuses what a plain INSERT would refuse.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from receiptd import domain, ports
from receiptd.db.models import INBOUND, REPORT
from receiptd.db.store import SqlStore

NOW = datetime(2026, 11, 25, 8, 0, 0, 123456, tzinfo=UTC)
SHANGHAI = domain.CHINA_TZ


def record(i: int, **changes: object) -> ports.ReportRecord:
    fields: dict[str, object] = {
        "biz_id": f"{i}^0",
        "phone_number": f"138{i:08d}",
        "success": i % 2 == 0,
        "send_time": datetime(2026, 11, 25, 16, 0, 1, tzinfo=SHANGHAI),
        "out_id": 'out "quoted" \\ back/slash 引号',
        "report_time": None if i % 3 else NOW - timedelta(seconds=i),
        "err_code": "DELIVERED",
        "err_msg": "用户接收成功 👍",
        "sms_size": i,
    }
    fields.update(changes)
    return ports.ReportRecord(f"m{i}", domain.SmsReport(**fields))  # type: ignore[arg-type]


def test_values_round_trip_and_in_batch_duplicates_count_once(engine: sa.Engine) -> None:
    store = SqlStore(engine)
    batch = [record(i) for i in range(5)] + [record(1)]
    result = store.write_batch(ports.Batch(reports=batch), NOW)
    assert result.reports_new == 5
    with engine.connect() as conn:
        stored = {r.biz_id: r for r in conn.execute(sa.select(REPORT))}
    for original in batch[:5]:
        row, want = stored[original.report.biz_id], original.report
        assert row.mns_message_id == original.message_id
        assert (row.phone_number, row.success, row.out_id) == (
            want.phone_number, want.success, want.out_id,
        )  # fmt: skip
        assert row.send_time == want.send_time.astimezone(UTC)
        assert row.report_time == want.report_time
        assert (row.err_code, row.err_msg, row.sms_size) == (want.err_code, want.err_msg, i_of(row))
        assert row.received_at == NOW  # microseconds kept
    up = ports.InboundRecord(
        "u1",
        domain.SmsUp("13800000001", '退订\n"x"', NOW, dest_code="01", sequence_id="7"),
    )
    assert store.write_batch(ports.Batch(inbound=[up, up]), NOW).inbound_new == 1
    with engine.connect() as conn:
        [reply] = conn.execute(sa.select(INBOUND)).all()
    assert (reply.content, reply.send_time) == ('退订\n"x"', NOW)


def i_of(row: sa.Row[object]) -> int:
    return int(str(row.biz_id).split("^")[0])


# SQLite does not enforce VARCHAR lengths (the domain parser bounds values there).
@pytest.mark.parametrize("db_url", ["postgresql", "mariadb"], indirect=True)
def test_a_value_too_long_is_refused_not_truncated(engine: sa.Engine) -> None:
    store = SqlStore(engine)
    with pytest.raises(ports.StoreWriteError):
        store.write_batch(ports.Batch(reports=[record(1, out_id="x" * 129)]), NOW)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(REPORT)).scalar_one() == 0
