"""What the send-store twin (receiptd.testing.sends) adds to the contract suite
(tests/integration/test_send_store_contract.py): the outage switch, the status API's view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from receiptd import domain, ports
from receiptd.testing import InMemorySendStore

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
ALIYUN, HUAWEI = domain.Provider.ALIYUN, domain.Provider.HUAWEI


def new(biz: str, phone: str = "13800000001", provider: domain.Provider = ALIYUN) -> ports.NewSend:
    return ports.NewSend(provider, biz, phone, NOW - timedelta(hours=1))


def test_an_unavailable_store_fails_every_call_like_an_outage() -> None:
    store = InMemorySendStore()
    store.register([new("b1")], NOW)
    store.unavailable = True
    calls = [
        lambda: store.register([new("b2")], NOW),
        lambda: store.claim_due(ALIYUN, NOW, timedelta(0), 10),
        lambda: store.peek_due(ALIYUN, NOW, timedelta(0), 10),
        store.summary,
        lambda: store.by_biz_id("b1"),
        lambda: store.start_run("r", NOW),
    ]
    for call in calls:
        with pytest.raises(ports.StoreUnavailable):
            call()
    store.unavailable = False
    assert [r["biz_id"] for r in store.by_biz_id("b1")] == ["b1"]


def test_aliyun_numbers_are_registered_in_the_receipts_form_huawei_ones_verbatim() -> None:
    store = InMemorySendStore()
    sends = [
        new("b1", "+8613800000001"),
        new("b1", "13800000001"),
        new("t1", "+8613800000001", HUAWEI),
    ]
    assert store.register(sends, NOW) == 2
    assert sorted(r.send.phone_number for r in store.rows.values()) == [
        "+8613800000001",
        "13800000001",
    ]


def test_by_biz_id_gives_the_status_api_rows_sorted_by_phone() -> None:
    store = InMemorySendStore()
    store.register([new("b1", "13800000002"), new("b1", "13800000001"), new("b2")], NOW)
    (first, second) = store.by_biz_id("b1")
    assert (first["phone_number"], second["phone_number"]) == ("13800000001", "13800000002")
    assert first["status"] == "pending" and first["settled_by"] is None
    assert first["send_date"] == domain.provider_send_date(
        NOW - timedelta(hours=1), domain.CHINA_TZ
    )
    assert store.by_biz_id("nothing") == []


def test_settle_then_the_row_shows_who_settled_it() -> None:
    store = InMemorySendStore()
    store.register([new("b1")], NOW)
    (claimed,) = store.claim_due(ALIYUN, NOW, timedelta(0), 10)
    assert store.rows[claimed.id].claimed_until == NOW + ports.CLAIM_LEASE
    settled = ports.Settlement(claimed.id, domain.SendStatus.FAILED, err_code="E1")
    assert store.settle([settled], [claimed], NOW, 60, 3600) == 1
    (row,) = store.by_biz_id("b1")
    assert (row["status"], row["settled_by"], row["err_code"], row["check_count"]) == (
        "failed",
        "query",
        "E1",
        1,
    )
    assert row["claimed_by"] is None


def test_runs_are_numbered_and_the_summary_names_the_last() -> None:
    store = InMemorySendStore()
    first = store.start_run("r1", NOW)
    store.finish_run(first, NOW + timedelta(seconds=5), settled=3, expired=1)
    second = store.start_run("r2", NOW + timedelta(minutes=1))
    assert (first, second) == (1, 2)
    assert store.runs[1].counts == (("expired", 1), ("settled", 3))
    summary = store.summary()
    assert (summary.last_run_started, summary.last_run_finished) == (
        NOW + timedelta(minutes=1),
        None,
    )
