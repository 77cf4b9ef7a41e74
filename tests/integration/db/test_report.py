"""receiptd.db.report on every backend: what falls in the window, the groups' raw values, the
account filter, and the receipts read whole or as a bounded sample."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from receiptd import domain, reporting
from receiptd.db import report
from receiptd.db.models import REPORT, SEND

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
WINDOW = report.Window(NOW - timedelta(days=1), NOW)
BEFORE = NOW - timedelta(days=2)  # outside the window
INSIDE = NOW - timedelta(hours=3)


def send(
    biz_id: str,
    status: str,
    settled_by: str | None,
    *,
    sent_at: datetime = INSIDE,
    settled_at: datetime | None = INSIDE,
    account: str = "default",
    provider: str = "aliyun",
    template: str | None = "SMS_1",
    err_code: str | None = None,
) -> dict[str, Any]:
    return {
        "provider": provider, "account": account, "matched_by": "biz_id", "biz_id": biz_id,
        "phone_number": "13800000000", "template_code": template, "sign_name": "签名",
        "sent_at": sent_at, "send_date": domain.provider_send_date(sent_at),
        "status": status, "settled_by": settled_by, "err_code": err_code,
        "settled_at": None if status == "pending" else settled_at,
        "check_count": 0, "created_at": sent_at, "updated_at": sent_at,
    }  # fmt: skip


def receipt(
    biz_id: str,
    seconds: float | None,
    *,
    received_at: datetime = INSIDE,
    account: str = "default",
    provider: str | None = None,
    success: bool = True,
) -> dict[str, Any]:
    sent = received_at - timedelta(minutes=5)
    return {
        "account": account, "matched_by": "biz_id", "biz_id": biz_id,
        "phone_number": "13800000000", "success": success, "provider": provider,
        "send_time": sent,
        "report_time": None if seconds is None else sent + timedelta(seconds=seconds),
        "err_code": "DELIVERED" if success else "MK:0001", "received_at": received_at,
    }  # fmt: skip


@pytest.fixture
def seeded(engine: sa.Engine) -> Iterator[sa.Engine]:
    sends = [
        send("d1", "delivered", "receipt"),
        send("d2", "delivered", "query", sent_at=BEFORE),  # sent before, settled inside: in
        send("f1", "failed", "receipt", err_code="MK:0001", template=None),
        send("e1", "expired", "horizon", sent_at=BEFORE),
        send("p1", "pending", None),
        send("p2", "pending", None, sent_at=BEFORE),  # pending since before the window: out
        send("old", "delivered", "receipt", sent_at=BEFORE, settled_at=BEFORE),  # out
        send("h1", "delivered", "receipt", provider="huawei", account="shop"),
    ]
    receipts = [
        receipt("d1", 2.0),
        receipt("f1", 4.0, success=False),
        receipt("h1", 6.0, provider="huawei", account="shop"),
        receipt("nosend", 8.0, provider="aliyun"),  # a receipt receiptd never registered
        receipt("untimed", None),  # no report time: not timed
        receipt("old", 1.0, received_at=BEFORE),  # out
    ]
    with engine.begin() as conn:
        conn.execute(SEND.insert(), sends)
        conn.execute(REPORT.insert(), receipts)
    yield engine


def read(engine: sa.Engine, by: str, window: report.Window = WINDOW, limit: int = 100) -> Any:
    with engine.connect() as conn:
        return report.read(conn, by, window, limit)


def counts(tallies: list[reporting.Tally]) -> dict[tuple[str | None, str, str | None], int]:
    return {(t.value, t.status, t.settled_by): t.sends for t in tallies}


def test_sends_settled_in_the_window_and_pending_ones_sent_in_it(seeded: sa.Engine) -> None:
    found = read(seeded, "provider")
    assert counts(found.tallies) == {
        ("aliyun", "delivered", "receipt"): 1,
        ("aliyun", "delivered", "query"): 1,
        ("aliyun", "failed", "receipt"): 1,
        ("aliyun", "expired", "horizon"): 1,
        ("aliyun", "pending", None): 1,
        ("huawei", "delivered", "receipt"): 1,
    }
    timed = sorted((r.value, r.seconds) for r in found.receipts)
    # A receipt row from before 0003 (provider NULL) is Aliyun's.
    assert timed == [("aliyun", 2.0), ("aliyun", 4.0), ("aliyun", 8.0), ("huawei", 6.0)]
    assert found.sampled is False


def test_the_window_bounds_are_inclusive_and_the_future_is_out(seeded: sa.Engine) -> None:
    with seeded.begin() as conn:
        conn.execute(SEND.insert(), [send("edge", "delivered", "query", settled_at=WINDOW.since)])
        conn.execute(
            SEND.insert(),
            [send("later", "delivered", "query", settled_at=NOW + timedelta(seconds=1))],
        )
    found = counts(read(seeded, "account").tallies)
    assert found[("default", "delivered", "query")] == 2  # d2 and edge, not later


@pytest.mark.parametrize(
    ("by", "values"),
    [
        ("account", {"default", "shop"}),
        ("template", {"SMS_1", None}),
        ("sign", {"签名"}),
        ("code", {"MK:0001", None}),
        # 05:00 UTC is 13:00 in Shanghai; d2 and e1 were sent two days before and settled in it
        ("day", {"2026-11-30", "2026-12-02"}),
    ],
)
def test_the_send_values_of_each_by(seeded: sa.Engine, by: str, values: set[str | None]) -> None:
    assert {t.value for t in read(seeded, by).tallies} == values


def test_receipts_take_their_sends_template_and_sign(seeded: sa.Engine) -> None:
    timed = {(r.value, r.seconds) for r in read(seeded, "template").receipts}
    # f1's send has no template; nosend has no send (and no template of its own).
    assert timed == {("SMS_1", 2.0), (None, 4.0), ("SMS_1", 6.0), (None, 8.0)}
    assert {r.value for r in read(seeded, "sign").receipts} == {"签名", None}
    assert {(r.value, r.success) for r in read(seeded, "code").receipts} == {
        ("DELIVERED", True), ("MK:0001", False),
    }  # fmt: skip


def test_one_account(seeded: sa.Engine) -> None:
    found = read(seeded, "provider", report.Window(WINDOW.since, NOW, "shop"))
    assert counts(found.tallies) == {("huawei", "delivered", "receipt"): 1}
    assert [r.seconds for r in found.receipts] == [6.0]


def test_an_empty_window(engine: sa.Engine) -> None:
    found = read(engine, "day")
    assert (found.tallies, found.receipts, found.sampled) == ([], [], False)


def test_a_big_window_is_sampled_to_the_limit(engine: sa.Engine) -> None:
    """1,000 receipts with delivery times 0..999 s: a sample of 200 reads 200 rows by key, and
    its percentiles stay near the exact 499 and 899."""
    rows = [
        receipt(f"b{i}", float(i), received_at=INSIDE + timedelta(milliseconds=i))
        for i in range(1000)
    ]
    with engine.begin() as conn:
        conn.execute(REPORT.insert(), rows)
    exact = read(engine, "provider", limit=1000)
    assert (len(exact.receipts), exact.sampled) == (1000, False)
    sample = read(engine, "provider", limit=200)
    assert (len(sample.receipts), sample.sampled) == (200, True)
    assert len({r.seconds for r in sample.receipts}) == 200  # no receipt twice
    latency = reporting.latency(r.seconds for r in sample.receipts)
    assert latency.p50 is not None and abs(latency.p50 - 499) < 80
    assert latency.p90 is not None and abs(latency.p90 - 899) < 50
    again = read(engine, "provider", limit=200)
    assert [r.seconds for r in again.receipts] == [r.seconds for r in sample.receipts]
