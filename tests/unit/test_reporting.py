"""receiptd.reporting: the window, groups and keys, shares, percentiles, the table, the JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiptd import reporting
from receiptd.reporting import Receipt, Tally

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 12, 1, 16, 30, tzinfo=UTC)  # 00:30 on 2 December in Shanghai


def receipt(value: str | None, seconds: float, success: bool = True, at: datetime = T0) -> Receipt:
    return Receipt(value, success, at, at + timedelta(seconds=seconds))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1h", timedelta(hours=1)),
        ("7d", timedelta(days=7)),
        ("30d", timedelta(days=30)),
        ("2w", timedelta(weeks=2)),
        ("90m", timedelta(minutes=90)),
        (" 7d ", timedelta(days=7)),
    ],
)
def test_a_window_is_a_whole_number_of_minutes_hours_days_or_weeks(
    text: str, expected: timedelta
) -> None:
    assert reporting.parse_window(text) == expected


@pytest.mark.parametrize("text", ["", "7", "d", "0d", "07d", "1.5h", "-1d", "7 d", "1y", "7D"])
def test_anything_else_is_refused_saying_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a window: expected e\.g\. 90m, 1h, 7d"):
        reporting.parse_window(text)


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([], 50, None),
        ([3.0], 50, 3.0),
        ([3.0], 90, 3.0),
        ([float(v) for v in range(1, 11)], 50, 5.0),
        ([float(v) for v in range(1, 11)], 90, 9.0),
        ([float(v) for v in range(1, 11)], 91, 10.0),
        ([1.0, 2.0], 0, 1.0),
    ],
)
def test_percentile_is_the_nearest_rank(values: list[float], p: float, expected: float) -> None:
    assert reporting.percentile(values, p) == expected


@given(st.lists(st.integers(-100, 10_000), min_size=1), st.sampled_from([50, 90]))
def test_the_percentile_is_a_value_with_p_percent_at_or_below_it(values: list[int], p: int) -> None:
    ordered = sorted(float(v) for v in values)
    found = reporting.percentile(ordered, p)
    assert found in ordered
    at_or_below = sum(v <= found for v in ordered)
    below = sum(v < found for v in ordered)
    assert at_or_below >= p / 100 * len(ordered) > below


def test_groups_count_statuses_of_all_sends_and_ways_of_the_settled_ones() -> None:
    tallies = [
        Tally("aliyun", "delivered", "receipt", 6),
        Tally("aliyun", "delivered", "query", 1),
        Tally("aliyun", "failed", "receipt", 1),
        Tally("aliyun", "expired", "horizon", 1),
        Tally("aliyun", "expired", "window", 1),
        Tally("aliyun", "pending", None, 2),
        Tally("huawei", "pending", None, 1),
    ]
    receipts = [receipt("aliyun", s) for s in (1, 2, 3, 4, 10)] + [receipt("mystery", 5)]
    aliyun, huawei, mystery = reporting.groups("provider", tallies, receipts, SHANGHAI)
    assert (aliyun.key, aliyun.sends, aliyun.settled) == ("aliyun", 12, 10)
    assert aliyun.statuses == {"pending": 2, "delivered": 7, "failed": 1, "expired": 2}
    assert aliyun.settled_by == {"receipt": 7, "query": 1, "window": 1, "horizon": 1}
    assert aliyun.shares() == {
        "pending": 2 / 12, "delivered": 7 / 12, "failed": 1 / 12, "expired": 2 / 12,
        "receipt": 0.7, "query": 0.1, "expiry": 0.2,
    }  # fmt: skip
    assert aliyun.latency == reporting.Latency(3.0, 10.0, 5)
    # Nothing settled: no way to divide. Receipts only: a group with no sends.
    assert huawei.shares()["receipt"] is None and huawei.latency.samples == 0
    assert (mystery.sends, mystery.latency.p50) == (0, 5.0)
    assert mystery.shares()["delivered"] is None


def test_code_groups_failed_sends_by_error_family_and_the_rest_under_a_dash() -> None:
    tallies = [
        Tally("DELIVERED", "delivered", "receipt", 5),
        Tally("MK:0001", "failed", "receipt", 2),
        Tally("MK:0005", "failed", "query", 1),
        Tally(None, "failed", "query", 1),
        Tally(None, "pending", None, 3),
    ]
    receipts = [receipt("DELIVERED", 1), receipt("MK:0001", 4, success=False)]
    found = {g.key: g for g in reporting.groups("code", tallies, receipts, SHANGHAI)}
    assert {k: g.sends for k, g in found.items()} == {"-": 8, "MK": 3, "none": 1}
    assert found["MK"].latency.p50 == 4.0 and found["-"].latency.p50 == 1.0


def test_day_is_the_providers_calendar_day_of_the_send() -> None:
    tallies = [Tally("2026-12-02", "delivered", "receipt", 1)]
    receipts = [receipt(None, 2), receipt(None, 3, at=T0 - timedelta(hours=1))]
    found = reporting.groups("day", tallies, receipts, SHANGHAI)
    assert [(g.key, g.sends, g.latency.samples) for g in found] == [
        ("2026-12-01", 0, 1),  # 23:30 in Shanghai
        ("2026-12-02", 1, 1),
    ]
    assert [g.key for g in reporting.groups("day", [], receipts, UTC)] == ["2026-12-01"]


def test_a_missing_value_is_a_dash_and_overall_adds_everything_up() -> None:
    tallies = [Tally(None, "delivered", "receipt", 1), Tally("T1", "failed", "query", 3)]
    assert [g.key for g in reporting.groups("template", tallies, [], UTC)] == ["-", "T1"]
    total = reporting.overall(tallies, [receipt("T1", 7)])
    assert (total.key, total.sends, total.latency.p90) == ("all", 4, 7.0)
    empty = reporting.overall([], [])
    assert (empty.sends, empty.latency) == (0, reporting.Latency(None, None, 0))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0.0, "0.0s"),
        (4.04, "4.0s"),
        (-2.5, "-2.5s"),
        (60.0, "1m00s"),
        (725.0, "12m05s"),
        (3600.0, "1h00m"),
        (10_920.0, "3h02m"),
        (-90.0, "-1m30s"),
    ],
)
def test_duration(seconds: float | None, text: str) -> None:
    assert reporting.duration(seconds) == text


def test_the_table_aligns_every_column_also_with_wide_characters() -> None:
    tallies = [
        Tally("阿里云短信测试", "delivered", "receipt", 300),
        Tally("x", "failed", "query", 1),
    ]
    found = reporting.groups("sign", tallies, [receipt("x", 2.0)], UTC)
    lines = reporting.table("sign", found, reporting.overall(tallies, []))
    assert lines[0].split() == [
        "sign", "sends", "delivered", "failed", "expired", "pending", "by", "receipt", "by",
        "query", "by", "expiry", "p50", "p90", "timed",
    ]  # fmt: skip
    assert lines[1].split()[:3] == ["x", "1", "0.0%"] and lines[1].split()[-3:] == [
        "2.0s", "2.0s", "1"
    ]  # fmt: skip
    assert lines[2].split()[:3] == ["阿里云短信测试", "300", "100.0%"]
    assert lines[3].split()[:2] == ["all", "301"]
    assert len({reporting.width(line) for line in lines}) == 1, lines
    assert reporting.width("阿里云") == 6
    assert reporting.table("sign", [], reporting.overall([], [])) == [
        "no sends or receipts in the window"
    ]


def test_json_is_one_object_per_group_under_the_by_name() -> None:
    tallies = [Tally("default", "delivered", "receipt", 3), Tally("default", "pending", None, 1)]
    found = reporting.groups("account", tallies, [receipt("default", 1.5)], UTC)
    assert reporting.as_json("account", found) == [
        {
            "account": "default",
            "sends": 4,
            "pending": 1, "delivered": 3, "failed": 0, "expired": 0,
            "settled_by": {"receipt": 3, "query": 0, "window": 0, "horizon": 0},
            "shares": {
                "pending": 0.25, "delivered": 0.75, "failed": 0.0, "expired": 0.0,
                "receipt": 1.0, "query": 0.0, "expiry": 0.0,
            },
            "delivery_seconds": {"p50": 1.5, "p90": 1.5, "samples": 1},
        }
    ]  # fmt: skip


def test_the_caption_says_what_was_timed() -> None:
    since = datetime(2026, 12, 1, 15, 16, 59, tzinfo=UTC)
    assert reporting.caption(since, "1d", 261, sampled=False) == [
        "window 1d, since 2026-12-01 15:16 UTC: sends settled in it, and sends made in it still "
        "pending",
        "delivery time (report_time - send_time): all 261 receipts received in it",
    ]
    assert "a sample of 10000 receipts" in reporting.caption(since, "30d", 10_000, True)[1]
