"""The compensator's twins (receiptd.testing.lookups): a lookup over a dict, a counting limiter."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

import pytest

from receiptd import domain, ports
from receiptd.testing.lookups import CountingLimiter, FakeLookup, Truth

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
TODAY = date(2026, 11, 25)


def pending(
    send_id: int, biz: str, phone: str = "13800000001", day: date = TODAY
) -> ports.PendingSend:
    sent = NOW - timedelta(hours=send_id)
    return ports.PendingSend(send_id, domain.Provider.ALIYUN, biz, phone, sent, day, None, None, 0)


def test_known_sends_settle_unknown_ones_stay_pending_one_token_per_query() -> None:
    lookup = FakeLookup({("b1", "13800000001"): Truth(3), ("b2", "13800000002"): Truth(2, "E7")})
    limiter = CountingLimiter()
    sends = [pending(1, "b1"), pending(2, "b2", "13800000002"), pending(3, "b3", "13800000003")]
    result = lookup.lookup(sends, limiter)
    by_id = {s.send_id: s for s in result.settlements}
    assert by_id[1].status is domain.SendStatus.DELIVERED
    assert (by_id[2].status, by_id[2].err_code) == (domain.SendStatus.FAILED, "E7")
    assert 3 not in by_id  # the provider does not know it: no settlement
    assert limiter.acquired == len(lookup.calls) == result.calls["ok"] == 3


def test_a_waiting_send_settles_as_pending() -> None:
    result = FakeLookup({("b1", "13800000001"): Truth(1)}).lookup(
        [pending(1, "b1")], CountingLimiter()
    )
    assert [s.status for s in result.settlements] == [domain.SendStatus.PENDING]


def test_nothing_to_look_up_makes_no_call() -> None:
    result = FakeLookup().lookup([], CountingLimiter())
    assert (result.settlements, result.calls) == ([], {})


def test_fail_with_raises_before_any_call() -> None:
    lookup = FakeLookup(fail_with=ports.LookupUnavailable("down"))
    limiter = CountingLimiter()
    with pytest.raises(ports.LookupUnavailable):
        lookup.lookup([pending(1, "b1")], limiter)
    assert (limiter.acquired, lookup.calls) == (0, [])


def test_the_window_is_aliyuns_unless_given() -> None:
    lookup = FakeLookup()
    assert lookup.in_window(pending(1, "b1"), NOW)
    assert not lookup.in_window(pending(1, "b1", day=TODAY - timedelta(days=31)), NOW)
    assert lookup.oldest_send_date(NOW) == TODAY - timedelta(days=30)
    never = FakeLookup(window=lambda _send, _now: False)
    assert not never.in_window(pending(1, "b1"), NOW)


def test_the_limiter_counts_from_every_thread() -> None:
    limiter = CountingLimiter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: limiter.acquire(), range(2000)))
    assert limiter.acquired == 2000
