"""Idempotent inserts (receiptd.db.upsert) on every database: exact counts, ids, data errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from receiptd import ports
from receiptd.db import upsert
from receiptd.db.models import DEAD, REPORT

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
KEYS = ("account", "queue", "mns_message_id")
REPORT_KEYS = ("account", "matched_by", "biz_id", "phone_number")


def dead(message_id: str, queue: str = "q", **extra: Any) -> dict[str, Any]:
    row = {"queue": queue, "mns_message_id": message_id, "raw_body": b"x", "error": "bad",
           "first_seen": NOW, "last_seen": NOW, "seen_count": 1}  # fmt: skip
    return {**row, **extra}


def report(biz: str, phone: str = "13800000001", **extra: Any) -> dict[str, Any]:
    row = {"biz_id": biz, "phone_number": phone, "success": True, "send_time": NOW,
           "received_at": NOW, "err_code": None, "sms_size": 1}  # fmt: skip
    return {**row, **extra}


def count(engine: sa.Engine, table: sa.Table = REPORT) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_only_new_keys_are_inserted_and_counted(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        assert upsert.insert_ignore(conn, REPORT, [], REPORT_KEYS) == 0
        assert upsert.insert_ignore(conn, REPORT, [report("a"), report("b")], REPORT_KEYS) == 2
    with engine.begin() as conn:
        again = [report("b", err_code="NEW"), report("c"), report("a", "13800000002")]
        ids = upsert.insert_ignore_ids(conn, REPORT, again, REPORT_KEYS)
        stored = conn.execute(sa.select(REPORT.c.id, REPORT.c.biz_id, REPORT.c.phone_number))
        by_id = {row.id: (row.biz_id, row.phone_number) for row in stored}
        assert sorted(by_id[i] for i in ids) == [("a", "13800000002"), ("c", "13800000001")]
        code = conn.execute(sa.select(REPORT.c.err_code).where(REPORT.c.biz_id == "b")).scalar()
        assert code is None  # an existing row stays untouched
    assert count(engine) == 4


def test_a_duplicate_inside_one_batch_is_inserted_once(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        assert upsert.insert_ignore(conn, REPORT, [report("a"), report("a")], REPORT_KEYS) == 1


def test_more_rows_than_one_statement_holds_are_all_counted(engine: sa.Engine) -> None:
    rows = [report(f"m{i}") for i in range(1234)]
    with engine.begin() as conn:
        assert upsert.insert_ignore(conn, REPORT, rows[:700], REPORT_KEYS) == 700
        assert upsert.insert_ignore(conn, REPORT, rows, REPORT_KEYS) == 534
    assert count(engine) == 1234


def test_a_too_long_value_is_an_error_never_silently_cut(engine: sa.Engine) -> None:
    backend = engine.dialect.name
    if backend == "sqlite":
        pytest.skip("SQLite does not enforce VARCHAR lengths")
    expected: type[Exception] = ports.StoreWriteError if backend == "mysql" else sa.exc.DataError
    with pytest.raises(expected), engine.begin() as conn:
        upsert.insert_ignore(conn, REPORT, [report("a"), report("b" * 65)], REPORT_KEYS)
    assert count(engine) == 0


def test_upsert_count_inserts_at_one_then_counts_and_refreshes(engine: sa.Engine) -> None:
    later = NOW + timedelta(hours=1)
    with engine.begin() as conn:
        assert upsert.upsert_count(
            conn, DEAD, dead("a"), KEYS, "seen_count", ("last_seen", "error")
        )
        again = dead("a", last_seen=later, error="still bad")
        assert not upsert.upsert_count(
            conn, DEAD, again, KEYS, "seen_count", ("last_seen", "error")
        )
        assert not upsert.upsert_count(conn, DEAD, again, KEYS, "seen_count", ("last_seen",))
        row = conn.execute(sa.select(DEAD)).mappings().one()
    assert (row["seen_count"], row["error"], row["first_seen"], row["last_seen"]) == (
        3,
        "still bad",
        NOW,
        later,
    )


def test_json_values_are_naive_utc_text_and_naive_times_are_refused() -> None:
    aware = datetime(2026, 11, 25, 16, 0, tzinfo=UTC) + timedelta(microseconds=5)
    assert upsert._json_value(aware) == "2026-11-25 16:00:00.000005"
    assert upsert._json_value(aware.date()) == "2026-11-25"
    with pytest.raises(ValueError, match="naive"):
        upsert._json_value(datetime(2026, 11, 25))  # noqa: DTZ001
    with pytest.raises(TypeError):
        upsert._json_value(object())
