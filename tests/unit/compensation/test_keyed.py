"""KeyedLookup: each claimed send goes to the lookup of the id it is matched by."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from receiptd import domain, ports
from receiptd.compensation.keyed import KeyedLookup
from receiptd.testing.lookups import CountingLimiter, FakeLookup, Truth

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
BIZ, MSG = domain.SendKey.BIZ_ID, domain.SendKey.MESSAGE_ID


def pending(send_id: int, key: domain.SendKey, days_ago: int = 0) -> ports.PendingSend:
    sent = NOW - timedelta(days=days_ago, hours=1)
    return ports.PendingSend(
        send_id,
        domain.Provider.ALIYUN,
        f"id{send_id}",
        f"8521234567{send_id}",
        sent,
        domain.provider_send_date(sent),
        None,
        None,
        0,
        matched_by=key,
    )


def truths(*sends: ports.PendingSend, status: int = 3) -> dict[tuple[str, str], Truth]:
    return {(s.biz_id, s.phone_number): Truth(status) for s in sends}


def test_each_send_is_asked_of_its_keys_lookup_under_its_limiter() -> None:
    a, b, c = pending(1, BIZ), pending(2, MSG), pending(3, MSG)
    by_biz, by_msg = FakeLookup(truths(a)), FakeLookup(truths(b, c, status=2))
    shared, own = CountingLimiter(), CountingLimiter()
    result = KeyedLookup({BIZ: by_biz, MSG: by_msg}, {MSG: own}).lookup([a, b, c], shared)
    assert {(s.send_id, s.status) for s in result.settlements} == {
        (1, domain.SendStatus.DELIVERED),
        (2, domain.SendStatus.FAILED),
        (3, domain.SendStatus.FAILED),
    }
    assert [q.sends[0].id for q in by_biz.calls] == [1]
    assert sorted(q.sends[0].id for q in by_msg.calls) == [2, 3]
    assert (shared.acquired, own.acquired) == (1, 2)
    assert result.calls == {"ok": 3}


def test_a_key_without_a_lookup_is_never_asked_and_stays_in_the_window() -> None:
    only_msg = FakeLookup()
    keyed = KeyedLookup({MSG: only_msg})
    orphan = pending(1, BIZ, days_ago=40)
    assert keyed.in_window(orphan, NOW)  # its horizon expires it, not a window it has none of
    result = keyed.lookup([orphan], CountingLimiter())
    assert (result.settlements, result.calls, only_msg.calls) == ([], {}, [])


def test_one_keys_failure_leaves_the_others_results_and_is_counted() -> None:
    a, b = pending(1, BIZ), pending(2, MSG)
    failing = FakeLookup(fail_with=ports.LookupThrottled("QPS_LIMIT_CONTROL"))
    keyed = KeyedLookup({BIZ: FakeLookup(truths(a)), MSG: failing})
    result = keyed.lookup([a, b], CountingLimiter())
    assert [s.send_id for s in result.settlements] == [1]
    assert result.calls == {"ok": 1, "throttled": 1}


def test_when_every_key_fails_the_first_error_is_raised() -> None:
    down = FakeLookup(fail_with=ports.LookupUnavailable("down"))
    keyed = KeyedLookup({BIZ: down, MSG: FakeLookup(fail_with=ports.LookupFailed("x"))})
    with pytest.raises(ports.LookupUnavailable):
        keyed.lookup([pending(1, BIZ), pending(2, MSG)], CountingLimiter())


def test_window_plan_and_bulk_expiry_follow_the_keys() -> None:
    old = pending(1, MSG, days_ago=40)
    keyed = KeyedLookup({BIZ: FakeLookup(), MSG: FakeLookup()})
    assert not keyed.in_window(old, NOW)
    assert [q.sends[0].id for q in keyed.plan([pending(2, BIZ), old])] == [2, 1]
    assert keyed.oldest_send_date(NOW) == NOW.astimezone(domain.CHINA_TZ).date() - timedelta(30)


def test_lookups_of_two_providers_or_none_are_refused() -> None:
    with pytest.raises(ValueError, match="one provider"):
        KeyedLookup({})
    with pytest.raises(ValueError, match="one provider"):
        huawei = FakeLookup(provider_name=domain.Provider.HUAWEI)
        KeyedLookup({BIZ: FakeLookup(), MSG: huawei})
