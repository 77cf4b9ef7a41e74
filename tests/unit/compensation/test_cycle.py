"""The compensator core over the in-memory send store and lookups: no database, no sockets.

The same store rules run against SQLite, PostgreSQL and MariaDB in
tests/integration/test_send_store_contract.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from receiptd import domain, metrics, ports
from receiptd.compensation import planning
from receiptd.compensation.cycle import AccountLookup, Compensator
from receiptd.testing import InMemorySendStore as SendStore
from receiptd.testing.lookups import CountingLimiter, FakeLookup, Truth

NOW = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)  # 12:00 in China
ALIYUN, HUAWEI = domain.Provider.ALIYUN, domain.Provider.HUAWEI


def sample(name: str, labels: dict[str, str]) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def register(store: SendStore, *specs: tuple[str, str, timedelta], provider=ALIYUN, out_id=None):
    store.register(
        [
            ports.NewSend(provider, biz, phone, NOW - age, out_id=out_id)
            for biz, phone, age in specs
        ],
        NOW,
    )


def compensator(
    store: SendStore,
    *lookups,
    grace: float = 60.0,
    batch: int = 100,
    limiter: ports.RateLimiter | None = None,
    heartbeat=lambda: None,
) -> Compensator:
    return Compensator(
        store,
        list(lookups),
        limiter or CountingLimiter(),
        grace=timedelta(seconds=grace),
        batch_size=batch,
        base_backoff=300.0,
        max_backoff=3600.0,
        replica="test",
        clock=lambda: NOW,
        heartbeat=heartbeat,
    )


def statuses(store: SendStore, *biz_ids: str) -> dict[str, tuple[str, str | None]]:
    rows = [r for b in biz_ids for r in store.by_biz_id(b)]
    return {r["biz_id"]: (r["status"], r["settled_by"]) for r in rows}


def test_settles_what_the_provider_knows_and_backs_off_the_rest(sends: SendStore) -> None:
    hour = timedelta(hours=1)
    register(sends, ("d^0", "13800000001", hour), ("f^0", "13800000002", hour))
    register(sends, ("p^0", "13800000003", hour), ("u^0", "13800000004", hour))
    lookup = FakeLookup(
        {
            ("d^0", "13800000001"): Truth(3, "DELIVERED"),
            ("f^0", "13800000002"): Truth(2, "MK:0001"),
            ("p^0", "13800000003"): Truth(1),
        }
    )
    summary = compensator(sends, lookup).run_once()

    assert statuses(sends, "d^0", "f^0", "p^0", "u^0") == {
        "d^0": ("delivered", "query"),
        "f^0": ("failed", "query"),
        "p^0": ("pending", None),
        "u^0": ("pending", None),
    }
    assert sends.by_biz_id("f^0")[0]["err_code"] == "MK:0001"
    (pending,) = sends.by_biz_id("p^0")
    assert pending["check_count"] == 1 and pending["claimed_by"] is None
    assert summary.claimed == 4 and summary.settled == {"query": 2}
    assert summary.calls == {"ok": 4} and summary.still_pending == 2
    assert sends.summary().last_run_finished is not None


def test_backed_off_sends_are_not_queried_again_in_the_next_cycle(sends: SendStore) -> None:
    register(sends, ("p^0", "13800000003", timedelta(hours=1)))
    lookup = FakeLookup()
    comp = compensator(sends, lookup)
    comp.run_once()
    comp.run_once()
    assert len(lookup.calls) == 1


def test_sends_inside_the_grace_period_are_left_to_their_receipts(sends: SendStore) -> None:
    register(sends, ("new^0", "13800000001", timedelta(seconds=30)))
    lookup = FakeLookup({("new^0", "13800000001"): Truth(3, "DELIVERED")})
    assert compensator(sends, lookup, grace=60).run_once().claimed == 0
    assert lookup.calls == []


def test_window_edges_expire_without_a_call(sends: SendStore) -> None:
    days = {f"d{n}^0": timedelta(days=n) for n in (29, 30, 31, 45)}
    register(sends, *[(biz, "13800000001", age) for biz, age in days.items()])
    truths = {(biz, "13800000001"): Truth(3, "DELIVERED") for biz in days}
    lookup = FakeLookup(truths)
    window = {"provider": "aliyun", "account": "default", "path": "window"}
    before = sample("receiptd_sends_settled_total", window)

    summary = compensator(sends, lookup).run_once()

    assert statuses(sends, *days) == {
        "d29^0": ("delivered", "query"),
        "d30^0": ("delivered", "query"),
        "d31^0": ("expired", "window"),
        "d45^0": ("expired", "window"),
    }
    assert sorted(q.biz_id or "" for q in lookup.calls) == ["d29^0", "d30^0"]
    assert summary.expired == 2 and summary.settled == {"window": 2, "query": 2}
    assert sample("receiptd_sends_settled_total", window) == before + 2


def test_claimed_send_outside_a_lookups_own_window_expires(sends: SendStore) -> None:
    register(sends, ("old^0", "13800000001", timedelta(days=3)))
    lookup = FakeLookup(window=lambda send, now: False)  # e.g. a provider with a 2-day window
    compensator(sends, lookup).run_once()
    assert statuses(sends, "old^0") == {"old^0": ("expired", "window")}
    assert lookup.calls == []


def test_a_failing_provider_does_not_stop_the_others(sends: SendStore) -> None:
    register(sends, ("a^0", "13800000001", timedelta(hours=1)))
    register(sends, ("h^0", "13800000002", timedelta(hours=1)), provider=HUAWEI)
    broken = FakeLookup(fail_with=ports.LookupUnavailable("503 from gateway"))
    huawei = FakeLookup({("h^0", "13800000002"): Truth(3, "DELIVERED")}, provider_name=HUAWEI)

    summary = compensator(sends, broken, huawei).run_once()

    assert statuses(sends, "a^0", "h^0") == {
        "a^0": ("pending", None),
        "h^0": ("delivered", "query"),
    }
    aliyun, hw = summary.providers
    assert aliyun.calls == {"unavailable": 1} and "503" in (aliyun.error or "")
    assert hw.error is None and hw.settled == {"query": 1}
    assert sends.by_biz_id("a^0")[0]["claimed_by"] is None  # released, backed off


def test_batches_until_nothing_due_and_reports_progress(sends: SendStore) -> None:
    specs = [(f"b{i}^0", f"1380000{i:04d}", timedelta(hours=2)) for i in range(25)]
    register(sends, *specs)
    truths = {(biz, phone): Truth(3, "DELIVERED") for biz, phone, _ in specs}
    progress: list[int] = []
    summary = compensator(sends, FakeLookup(truths), batch=10).run_once(progress.append)
    assert progress == [10, 10, 5]
    assert summary.settled == {"query": 25}


def test_groups_by_outid_cost_one_call(sends: SendStore) -> None:
    for i in range(3):
        register(sends, (f"g{i}^0", "13800000001", timedelta(hours=1)), out_id=f"order-{i}")
    lookup = FakeLookup({(f"g{i}^0", "13800000001"): Truth(3, "DELIVERED") for i in range(3)})
    summary = compensator(sends, lookup).run_once()
    assert summary.calls == {"ok": 1} and summary.settled == {"query": 3}


def test_dry_run_plans_without_claiming(sends: SendStore) -> None:
    register(sends, ("a^0", "13800000001", timedelta(hours=1)))
    register(sends, ("old^0", "13800000001", timedelta(days=40)))
    lookup = FakeLookup({("a^0", "13800000001"): Truth(3, "DELIVERED")})
    comp = compensator(sends, lookup)

    (plan,) = comp.plan()

    assert (plan.provider, plan.due, plan.expire) == ("aliyun", 2, 1)
    assert [q.biz_id for q in plan.queries] == ["a^0"]
    assert lookup.calls == []
    assert all(r["claimed_by"] is None for r in sends.by_biz_id("a^0"))
    assert comp.run_once().claimed == 1  # the old one expired in bulk before claiming


def test_gauges_follow_the_summary(sends: SendStore) -> None:
    register(sends, ("p^0", "13800000003", timedelta(hours=1)))
    compensator(sends, FakeLookup()).run_once()
    pending = {"provider": "aliyun", "account": "default", "status": "pending"}
    assert sample("receiptd_sends", pending) == 1
    age = sample("receiptd_oldest_pending_seconds", {"provider": "aliyun", "account": "default"})
    assert age == pytest.approx(3600, abs=1)


def test_stop_ends_the_cycle_without_further_calls_and_releases_claims(sends: SendStore) -> None:
    specs = [(f"s{i}^0", f"1380000{i:04d}", timedelta(hours=2)) for i in range(25)]
    register(sends, *specs)
    lookup = FakeLookup({(b, p): Truth(3, "DELIVERED") for b, p, _ in specs})

    class StopAfter(CountingLimiter):
        def acquire(self) -> None:
            super().acquire()
            if self.acquired == 3:
                comp.stop()

    limiter = StopAfter()
    comp = compensator(sends, lookup, grace=0, batch=10, limiter=limiter)
    summary = comp.run_once()

    # The stop came while the third call waited for its slot: that call is not made.
    assert limiter.acquired == 3 and len(lookup.calls) == 2
    assert summary.providers[0].error is None
    rows = [r for b, _, _ in specs for r in sends.by_biz_id(b)]
    assert all(r["status"] == "pending" and r["claimed_by"] is None for r in rows)


def test_heartbeats_before_every_call_and_after_every_batch(sends: SendStore) -> None:
    specs = [(f"h{i}^0", f"1380000{i:04d}", timedelta(hours=2)) for i in range(25)]
    register(sends, *specs)
    beats: list[int] = []
    lookup = FakeLookup({(b, p): Truth(3, "DELIVERED") for b, p, _ in specs})
    heartbeat = lambda: beats.append(len(lookup.calls))  # noqa: E731
    compensator(sends, lookup, grace=0, batch=10, heartbeat=heartbeat).run_once()
    assert len(lookup.calls) == 25
    assert len(beats) == 25 + 3  # one per call, one per batch of 10, 10, 5


# --- accounts (issue 23) ------------------------------------------------------------------


def test_a_backlog_in_one_account_delays_another_accounts_first_query_by_one_batch_at_most(
    sends: SendStore,
) -> None:
    """Accounts take turns a batch each: 100,000 due sends of brand_a leave brand_b's first
    query behind at most one batch of brand_a's queries (clock fixed: nothing sleeps)."""
    batch, backlog = 5000, 100_000
    now = NOW - timedelta(hours=1)
    sends.register(
        [
            ports.NewSend(ALIYUN, f"a{i}^0", "13800000001", now, account="brand_a")
            for i in range(backlog)
        ]
        + [ports.NewSend(ALIYUN, "b^0", "13800000002", now, account="brand_b")],
        NOW,
    )
    order: list[str] = []

    class Recording(FakeLookup):
        def __init__(self, account: str) -> None:
            super().__init__()
            self.account = account

        def lookup(self, pending, limiter):  # type: ignore[no-untyped-def]
            order.extend(self.account for _ in planning.plan(pending))
            return super().lookup(pending, limiter)

    lookups = [AccountLookup(Recording(a), a, CountingLimiter()) for a in ("brand_a", "brand_b")]
    summary = compensator(sends, *lookups, batch=batch).run_once()

    assert order.index("brand_b") <= batch  # one batch of brand_a's queries, no more
    assert order.count("brand_a") == backlog and order.count("brand_b") == 1
    assert summary.claimed == backlog + 1
    assert [(p.account, p.claimed) for p in summary.providers] == [
        ("brand_a", backlog),
        ("brand_b", 1),
    ]


def test_each_account_is_asked_only_about_its_own_sends_through_its_own_limiter(
    sends: SendStore,
) -> None:
    hour = timedelta(hours=1)
    sends.register(
        [
            ports.NewSend(ALIYUN, "same^0", "13800000001", NOW - hour, account="brand_a"),
            ports.NewSend(ALIYUN, "same^0", "13800000001", NOW - hour, account="brand_b"),
        ],
        NOW,
    )
    a = FakeLookup({("same^0", "13800000001"): Truth(3, "DELIVERED")})
    b = FakeLookup({("same^0", "13800000001"): Truth(2, "MK:0001")})
    limits = {"brand_a": CountingLimiter(), "brand_b": CountingLimiter()}
    compensator(
        sends,
        AccountLookup(a, "brand_a", limits["brand_a"]),
        AccountLookup(b, "brand_b", limits["brand_b"]),
    ).run_once()
    rows = {r["account"]: r["status"] for r in sends.by_biz_id("same^0")}
    assert rows == {"brand_a": "delivered", "brand_b": "failed"}
    assert len(a.calls) == len(b.calls) == 1
    assert limits["brand_a"].acquired == limits["brand_b"].acquired == 1
