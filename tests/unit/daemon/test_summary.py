"""The registry summary as data (receiptd.daemon.summary): per provider as before, per
(provider, account) added, one account's alone with ``account``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from receiptd import ports
from receiptd.daemon import summary

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
SUMMARY = ports.StatusSummary(
    counts={
        ("aliyun", "default", "delivered"): 3,
        ("aliyun", "default", "pending"): 1,
        ("aliyun", "brand_b", "pending"): 2,
        ("huawei", "default", "failed"): 4,
    },
    oldest_pending={
        ("aliyun", "default"): NOW - timedelta(seconds=90),
        ("aliyun", "brand_b"): (NOW - timedelta(seconds=600)).replace(tzinfo=None),  # naive: UTC
    },
    last_run_started=NOW - timedelta(minutes=5),
    dead_letters=7,
    inbound=2,
)


def test_every_account_adds_up_per_provider_and_is_listed_on_its_own() -> None:
    data = summary.report(SUMMARY, NOW)
    assert data["sends"] == {"aliyun": {"delivered": 3, "pending": 3}, "huawei": {"failed": 4}}
    assert data["oldest_pending_seconds"] == {"aliyun": 600}  # the older of the two accounts
    assert data["accounts"] == [
        {"provider": "aliyun", "account": "brand_b", "sends": {"pending": 2},
         "oldest_pending_seconds": 600},
        {"provider": "aliyun", "account": "default", "sends": {"delivered": 3, "pending": 1},
         "oldest_pending_seconds": 90},
        {"provider": "huawei", "account": "default", "sends": {"failed": 4},
         "oldest_pending_seconds": None},
    ]  # fmt: skip
    assert data["last_run_started"] == "2026-11-25T07:55:00+00:00"
    assert data["last_run_finished"] is None
    assert (data["dead_letters"], data["inbound"]) == (7, 2)


def test_one_account_counts_that_account_alone_of_each_provider() -> None:
    data = summary.report(SUMMARY, NOW, account="default")
    assert data["sends"] == {"aliyun": {"delivered": 3, "pending": 1}, "huawei": {"failed": 4}}
    assert data["oldest_pending_seconds"] == {"aliyun": 90}
    assert [(a["provider"], a["account"]) for a in data["accounts"]] == [
        ("aliyun", "default"),
        ("huawei", "default"),
    ]
    brand_b = summary.report(SUMMARY, NOW, account="brand_b")
    assert brand_b["sends"] == {"aliyun": {"pending": 2}}
    nobody = summary.report(SUMMARY, NOW, account="nobody")
    assert (nobody["sends"], nobody["accounts"], nobody["oldest_pending_seconds"]) == ({}, [], {})


def test_an_empty_registry() -> None:
    data = summary.report(ports.StatusSummary(), NOW)
    assert data == {
        "sends": {},
        "oldest_pending_seconds": {},
        "accounts": [],
        "last_run_started": None,
        "last_run_finished": None,
        "dead_letters": 0,
        "inbound": 0,
    }


STATS = ports.StatusSummary(
    settled={
        ("huawei", "default", "failed", "receipt"): 4,
        ("aliyun", "default", "delivered", "query"): 1,
        ("aliyun", "default", "delivered", "receipt"): 2,
        ("aliyun", "brand_b", "pending", ""): 2,
    },
    oldest_pending={
        ("aliyun", "default"): NOW - timedelta(seconds=90),
        ("aliyun", "brand_b"): (NOW - timedelta(seconds=600)).replace(tzinfo=None),  # naive: UTC
    },
    dead_letters=7,
    inbound=2,
)


def test_stats_list_each_status_and_settled_by_sorted_pending_as_null() -> None:
    data = summary.stats(STATS, NOW)
    assert [tuple(c.values()) for c in data["counts"]] == [
        ("aliyun", "brand_b", "pending", None, 2),
        ("aliyun", "default", "delivered", "query", 1),
        ("aliyun", "default", "delivered", "receipt", 2),
        ("huawei", "default", "failed", "receipt", 4),
    ]
    assert list(data["counts"][0]) == ["provider", "account", "status", "settled_by", "sends"]
    assert data["oldest_pending"] == [
        {"provider": "aliyun", "account": "brand_b", "sent_at": "2026-11-25T07:50:00+00:00"},
        {"provider": "aliyun", "account": "default", "sent_at": "2026-11-25T07:58:30+00:00"},
    ]
    assert (data["dead_letters"], data["inbound"]) == (7, 2)
    assert data["generated_at"] == "2026-11-25T08:00:00+00:00"


def test_stats_of_one_account_keep_every_accounts_dead_letters_and_replies() -> None:
    data = summary.stats(STATS, NOW, account="default")
    assert {(c["provider"], c["account"]) for c in data["counts"]} == {
        ("aliyun", "default"),
        ("huawei", "default"),
    }
    assert [o["account"] for o in data["oldest_pending"]] == ["default"]
    assert (data["dead_letters"], data["inbound"]) == (7, 2)
    nobody = summary.stats(STATS, NOW, account="nobody")
    assert (nobody["counts"], nobody["oldest_pending"]) == ([], [])


def test_stats_of_an_empty_registry() -> None:
    assert summary.stats(ports.StatusSummary(), NOW) == {
        "counts": [],
        "oldest_pending": [],
        "dead_letters": 0,
        "inbound": 0,
        "generated_at": "2026-11-25T08:00:00+00:00",
    }
