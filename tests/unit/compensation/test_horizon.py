"""The status horizon: the re-check schedule (pure) and the compensator's last query."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiptd import domain, ports
from receiptd.compensation import horizon
from receiptd.compensation.cycle import Compensator
from receiptd.testing import InMemorySendStore as SendStore
from receiptd.testing.lookups import CountingLimiter, FakeLookup, Truth

H72 = timedelta(hours=72)
T0 = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
ALIYUN = domain.Provider.ALIYUN


def send(check_count: int = 0, sent_at: datetime = T0, send_id: int = 1) -> ports.PendingSend:
    return ports.PendingSend(
        send_id, ALIYUN, f"b{send_id}", "13800000001", sent_at, sent_at.date(), None, None,
        check_count,
    )  # fmt: skip


def calls_over_life(
    schedule: horizon.Schedule, grace: timedelta, interval: timedelta
) -> list[timedelta]:
    """The ages at which a send that never settles is queried, with compensation cycles every
    ``interval`` from its send and its first check after ``grace``, as the compensator applies
    ``horizon.next_check_at`` and ``horizon.reached``. Ends with the last query at the horizon
    (without one: at 30 days, the query window)."""
    window_end = T0 + timedelta(days=30)
    ages: list[timedelta] = []
    due, count, now = T0 + grace, 0, T0
    while schedule.horizon is not None or now <= window_end:
        if now >= due:
            ages.append(now - T0)
            if horizon.reached(send(count), now, schedule.horizon):
                break
            due = horizon.next_check_at(send(count), now, schedule)
            count += 1
        now += interval
    return ages


def test_default_schedule_asks_ten_times_and_last_at_the_horizon() -> None:
    ages = calls_over_life(
        horizon.Schedule(600, 6 * 3600, H72), timedelta(seconds=300), timedelta(seconds=600)
    )
    hours = [round(a.total_seconds() / 3600, 1) for a in ages]
    assert hours == [0.2, 0.3, 0.7, 1.3, 2.7, 5.3, 10.7, 16.7, 22.7, 72.0]


def test_without_a_horizon_the_backoff_asks_until_the_window_ends() -> None:
    ages = calls_over_life(
        horizon.Schedule(600, 6 * 3600, None), timedelta(seconds=300), timedelta(seconds=600)
    )
    assert len(ages) == 125  # the figure the horizon replaces


@given(
    base=st.floats(1, 7200),
    cap=st.floats(1, 86400 * 3),
    hours=st.integers(1, 24 * 40),
    grace=st.integers(0, 3600),
    interval=st.integers(60, 7200),
)
def test_never_more_than_the_budget(
    base: float, cap: float, hours: int, grace: int, interval: int
) -> None:
    schedule = horizon.Schedule(base, cap, timedelta(hours=hours))
    ages = calls_over_life(schedule, timedelta(seconds=grace), timedelta(seconds=interval))
    assert 1 <= len(ages) <= horizon.MAX_CALLS
    assert all(a <= timedelta(hours=hours) + timedelta(seconds=interval) for a in ages)


def test_next_check_never_passes_the_horizon_and_past_it_backs_off() -> None:
    schedule = horizon.Schedule(600, 6 * 3600, H72)
    almost = T0 + H72 - timedelta(minutes=5)
    assert horizon.next_check_at(send(3), almost, schedule) == T0 + H72
    past = T0 + H72 + timedelta(hours=1)  # a last query whose call failed: asked again later
    assert horizon.next_check_at(send(3), past, schedule) == past + timedelta(seconds=4800)


def test_verdicts_expire_only_what_the_provider_left_pending() -> None:
    a, b, c = send(send_id=1), send(send_id=2), send(send_id=3)
    answered = [
        ports.Settlement(1, domain.SendStatus.PENDING),
        ports.Settlement(2, domain.SendStatus.DELIVERED),
    ]
    ok = horizon.verdicts([a, b, c], ports.LookupResult(answered, {"ok": 3}))
    assert [(s.send_id, s.status, s.settled_by) for s in ok] == [
        (1, domain.SendStatus.EXPIRED, domain.SettledBy.HORIZON),
        (3, domain.SendStatus.EXPIRED, domain.SettledBy.HORIZON),  # unknown to the provider
    ]
    partial = horizon.verdicts([a, c], ports.LookupResult(answered, {"ok": 1, "throttled": 1}))
    assert [s.send_id for s in partial] == [1]  # c's call may have failed: not judged
    assert horizon.verdicts([a, c], ports.LookupResult([], {"unavailable": 1})) == []


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def compensator(
    store: SendStore, lookup: FakeLookup, clock: Clock, limit: timedelta = H72
) -> Compensator:
    return Compensator(
        store,
        [lookup],
        CountingLimiter(),
        grace=timedelta(seconds=300),
        batch_size=100,
        base_backoff=600.0,
        max_backoff=6 * 3600.0,
        replica="test",
        clock=clock,
        horizons={ALIYUN: limit},
    )


def test_a_send_that_never_settles_costs_ten_calls_then_expires(sends: SendStore) -> None:
    sends.register([ports.NewSend(ALIYUN, "stuck^0", "13800000001", T0)], T0)
    lookup = FakeLookup({("stuck^0", "13800000001"): Truth(1)})
    clock = Clock(T0)
    comp = compensator(sends, lookup, clock)
    expired = 0
    while clock.now < T0 + timedelta(days=5):
        expired += comp.run_once().settled.get("horizon", 0)
        clock.now += timedelta(seconds=600)
    (row,) = sends.by_biz_id("stuck^0")
    assert (row["status"], row["settled_by"], row["check_count"]) == ("expired", "horizon", 10)
    assert len(lookup.calls) == 10 and expired == 1
    assert T0 + H72 <= row["settled_at"] < T0 + H72 + timedelta(seconds=600)


def test_a_later_verdict_overturns_expired_but_not_delivered(sends: SendStore) -> None:
    """The store side (a receipt through the SQL sink) is in tests/integration/test_store.py."""
    sends.register([ports.NewSend(ALIYUN, "late^0", "13800000001", T0 - H72)], T0 - H72)
    sends.register([ports.NewSend(ALIYUN, "done^0", "13800000002", T0 - H72)], T0 - H72)
    lookup = FakeLookup(
        {("late^0", "13800000001"): Truth(1), ("done^0", "13800000002"): Truth(3, "DELIVERED")}
    )
    summary = compensator(sends, lookup, Clock(T0)).run_once()
    assert summary.settled == {"horizon": 1, "query": 1} and summary.expired == 1

    receipt = domain.SettledBy.RECEIPT
    late = [
        ports.Settlement(row["id"], domain.SendStatus.FAILED, receipt, err_code="MK:0001")
        for biz in ("late^0", "done^0")
        for row in sends.by_biz_id(biz)
    ]
    assert sends.settle(late, [], T0 + timedelta(hours=1), 60, 600) == 1
    assert sends.by_biz_id("late^0")[0]["status"] == "failed"
    assert sends.by_biz_id("late^0")[0]["settled_by"] == "receipt"
    assert sends.by_biz_id("done^0")[0]["status"] == "delivered"


def test_zero_horizon_means_up_to_the_query_window(sends: SendStore) -> None:
    sends.register([ports.NewSend(ALIYUN, "old^0", "13800000001", T0 - H72 * 2)], T0)
    lookup = FakeLookup({("old^0", "13800000001"): Truth(1)})
    comp = compensator(sends, lookup, Clock(T0), limit=timedelta(0))
    assert comp.run_once().settled == {}
    assert sends.by_biz_id("old^0")[0]["status"] == "pending"


def test_horizons_from_settings_per_provider_and_zero_is_none() -> None:
    from receiptd import config, wiring

    settings = config.Settings(compensator_horizon=3600, compensator_horizon_huawei=0)
    horizons = wiring.compensator_horizons(settings)
    assert horizons == {ALIYUN: timedelta(hours=1), domain.Provider.HUAWEI: timedelta(0)}
    comp = Compensator(
        SendStore(), [], CountingLimiter(),
        grace=timedelta(0), batch_size=1, base_backoff=1, max_backoff=1, replica="x",
        horizons=horizons,
    )  # fmt: skip
    assert comp.horizons == {ALIYUN: timedelta(hours=1)}  # huawei: up to its window


def test_every_provider_takes_its_own_named_horizon() -> None:
    from receiptd import config, wiring

    assert {f"compensator_horizon_{p.value}" for p in domain.Provider} <= set(
        config.Settings.model_fields
    )
    settings = config.Settings(compensator_horizon_aliyun=60, compensator_horizon_huawei=120)
    assert wiring.compensator_horizons(settings) == {
        ALIYUN: timedelta(seconds=60),
        domain.Provider.HUAWEI: timedelta(seconds=120),
    }


def test_retention_per_table_overrides_and_keep_forever() -> None:
    from receiptd import config, wiring
    from receiptd.db import retention

    settings = config.Settings(retention_days=30, retention_days_sms_report=0)
    cuts = {c.rule.table: c for c in wiring.retention_cutoffs(settings, T0)}
    assert list(cuts) == list(retention.TABLES)
    assert cuts["sms_report"].before is None  # kept forever
    assert cuts["sms_send"].before == T0 - timedelta(days=30)
    assert cuts["sms_send"].rule.keep_value == "pending"  # pending sends never go
    only = wiring.retention_cutoffs(settings, T0, ("dead_letter",))
    assert [c.rule.table for c in only] == ["dead_letter"]


def test_a_bad_retention_or_horizon_value_names_the_key() -> None:
    from pydantic import ValidationError

    from receiptd import config

    with pytest.raises(ValidationError, match="retention_days_dead_letter"):
        config.Settings(retention_days_dead_letter=-1)
    with pytest.raises(ValidationError, match="compensator_horizon"):
        config.Settings(compensator_horizon=-5)
