"""The compensator through the real Dysmsapi SDK against the emulator, on every database."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from receiptd import api, config, domain, wiring
from receiptd.compensation.cycle import Compensator
from receiptd.compensation.ratelimit import TokenBucket
from receiptd.db.engine import create_db_engine
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd.providers.aliyun.dysms import AliyunStatusLookup
from receiptd.testing.lookups import CountingLimiter, FakeLookup, Truth
from receiptd_emulator import Emulator, FaultSpec, Profile, SeedSend

STATUS = {1: "pending", 2: "failed", 3: "delivered"}


@pytest.fixture
def emu() -> Iterator[Emulator]:
    # lossy: 30 % of receipts never arrive. Receipts are due within 50 ms so a send made now
    # has its final status by the time the compensator asks.
    profile = Profile.load("lossy").with_overrides(receipt_delay=(0.0, 0.05), seed=7)
    with Emulator(profile=profile) as emulator:
        yield emulator


@pytest.fixture
def settings(emu: Emulator, db_url: str) -> config.Settings:
    info = emu.info
    return config.Settings(
        database_url=db_url,
        aliyun_access_key_id=info.access_key_id,
        aliyun_access_key_secret=info.access_key_secret,
        aliyun_dysms_endpoint=info.dysms_endpoint,
        aliyun_request_timeout=5.0,
    )


@pytest.fixture
def sends(engine: sa.Engine) -> SendStore:
    return SendStore(SqlStore(engine))


def compensator(
    settings: config.Settings, sends: SendStore, limiter=None, replica="r1", batch=500
) -> Compensator:
    return Compensator(
        sends,
        wiring.status_lookups(settings),
        limiter or CountingLimiter(),
        grace=timedelta(0),
        batch_size=batch,
        base_backoff=600.0,
        max_backoff=3600.0,
        replica=replica,
    )


def rows_by_key(sends: SendStore, biz_ids: set[str]) -> dict[tuple[str, str], dict]:
    return {(r["biz_id"], r["phone_number"]): r for b in biz_ids for r in sends.by_biz_id(b)}


def assert_settled_as_recorded(emu: Emulator, sends: SendStore, biz_ids: set[str]) -> None:
    truth = {(r.biz_id, r.phone_number): r for r in emu.records() if r.biz_id in biz_ids}
    rows = rows_by_key(sends, biz_ids)
    assert set(rows) == set(truth)
    for key, record in truth.items():
        assert rows[key]["status"] == STATUS[record.status], key
        assert rows[key]["settled_by"] == "query"
        assert rows[key]["err_code"] == record.err_code


def seed(emu: Emulator, sends: SendStore, seeds: list[SeedSend]) -> list[str]:
    """Provider-side sends in the past, registered as made elsewhere."""
    biz_ids = emu.seed_sends(seeds)
    for biz_id, s in zip(biz_ids, seeds, strict=True):
        assert s.send_time is not None
        api.register_send(
            sends,
            biz_id=biz_id,
            phone_numbers=s.phone,
            sent_at=s.send_time,
            out_id=s.out_id or None,
            template_code=s.template_code,
        )
    return biz_ids


def seed_send(emu: Emulator, phone: str, sent: datetime, out_id: str = "") -> SeedSend:
    info = emu.info
    return SeedSend(phone, info.sign_name, info.template_code, out_id=out_id, send_time=sent)


def test_one_cycle_settles_every_send_as_the_provider_recorded(emu, settings, sends) -> None:
    info = emu.info
    client = wiring.dysms_client(settings)
    biz_ids = set()
    for i in range(12):  # single recipients, some sharing a phone with unique OutIds
        phone = f"1380000{i % 4:04d}"
        result = api.send_and_register(
            client,
            sends,
            phone,
            info.sign_name,
            info.template_code,
            {"code": "1234"},
            out_id=f"order-{i}",
        )
        biz_ids.add(result.biz_id)
    batch = api.send_and_register(
        client,
        sends,
        [f"1390000{i:04d}" for i in range(8)],
        info.sign_name,
        info.template_code,
        {"code": "1"},
    )
    biz_ids.add(batch.biz_id)
    assert batch.registered == 8
    threading.Event().wait(0.2)  # every receipt is due (profile: within 50 ms)

    summary = compensator(settings, sends).run_once()  # nothing consumed: all by query

    assert_settled_as_recorded(emu, sends, biz_ids)
    calls = emu.calls("QuerySendDetails")
    assert summary.claimed == 20 and summary.calls == {"ok": len(calls)}
    # 4 phones x 3 sends with unique OutIds → 4 group queries; 8 batch recipients by BizId.
    assert len(calls) == 12
    assert sum(1 for c in calls if "BizId" not in c.params) == 4


def test_window_edges_and_china_send_date(emu, settings, sends) -> None:
    now = datetime.now(UTC)
    noon_china = now.astimezone(domain.CHINA_TZ).replace(hour=12, minute=0, second=0)
    aged = {
        n: seed_send(emu, f"1370000{n:04d}", (noon_china - timedelta(days=n)).astimezone(UTC))
        for n in (29, 30, 31)
    }
    late_utc = (now - timedelta(days=2)).replace(hour=16, minute=30, second=0, microsecond=0)
    seeds = [*aged.values(), seed_send(emu, "13600000001", late_utc)]
    biz = dict(zip([29, 30, 31, "1630"], seed(emu, sends, seeds), strict=True))

    summary = compensator(settings, sends).run_once()

    dates = {c.params["BizId"]: c.params["SendDate"] for c in emu.calls("QuerySendDetails")}
    day = lambda n: (noon_china - timedelta(days=n)).strftime("%Y%m%d")  # noqa: E731
    assert dates[biz[29]] == day(29) and dates[biz[30]] == day(30)
    assert biz[31] not in dates  # expired without a call
    assert dates[biz["1630"]] == (late_utc + timedelta(days=1)).strftime("%Y%m%d")
    rows = rows_by_key(sends, set(biz.values()))
    status = {k: rows[(biz[k], s.phone)]["status"] for k, s in zip(biz, seeds, strict=True)}
    assert (status[29], status["1630"]) == ("delivered", "delivered")
    assert rows[(biz[31], aged[31].phone)]["settled_by"] == "window"
    assert status[31] == "expired" and summary.expired == 1
    # The emulator answers day 30 with isv.INVALID_PARAMETERS (its window is today + 29 days
    # back; receiptd's is 30 days back): the send must stay pending, never get a wrong status.
    assert status[30] in ("delivered", "pending")


def test_paging_past_fifty_details_for_one_phone_and_day(emu, settings, sends) -> None:
    sent = datetime.now(UTC) - timedelta(days=2)
    seeds = [seed_send(emu, "13500000000", sent + timedelta(seconds=i), f"o{i}") for i in range(60)]
    biz_ids = set(seed(emu, sends, seeds))

    compensator(settings, sends).run_once()

    calls = emu.calls("QuerySendDetails")
    assert sorted(c.params["CurrentPage"] for c in calls) == ["1", "2"]
    assert all("BizId" not in c.params and c.params["PageSize"] == "50" for c in calls)
    assert_settled_as_recorded(emu, sends, biz_ids)


def test_throttling_backs_off_without_failures_within_the_rate(emu, settings, sends) -> None:
    sent = datetime.now(UTC) - timedelta(hours=3)
    biz_ids = set(seed(emu, sends, [seed_send(emu, f"1330000{i:04d}", sent) for i in range(40)]))
    emu.set_faults("dysms", FaultSpec(throttle_rate=0.3, seed=3))
    rate, burst = 25.0, 2
    comp = compensator(settings, sends, TokenBucket(rate, burst))

    summary = comp.run_once()

    assert summary.calls.get("throttled", 0) > 0 and "error" not in summary.calls
    assert all(cycle.error is None for cycle in summary.providers)
    truth = {(r.biz_id, r.phone_number): STATUS[r.status] for r in emu.records()}
    for key, row in rows_by_key(sends, biz_ids).items():
        assert row["status"] in (truth[key], "pending")  # throttled to the end: still pending
    times = sorted(c.monotonic for c in emu.calls("QuerySendDetails"))
    assert max_in_window(times, 1.0) <= rate + burst


def max_in_window(times: list[float], window: float) -> int:
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


# Row claims across replicas need PostgreSQL or MariaDB (SQLite has a single writer).
@pytest.mark.parametrize("db_url", ["postgresql", "mariadb"], indirect=True)
def test_three_replicas_never_query_a_send_twice(emu, settings, sends, db_url) -> None:
    sent = datetime.now(UTC) - timedelta(hours=2)
    seeds = [seed_send(emu, f"1320000{i:04d}", sent) for i in range(150)]
    biz_ids = set(seed(emu, sends, seeds))
    engines = [create_db_engine(db_url) for _ in range(3)]
    summaries = []
    start = threading.Barrier(3)

    def replica(n: int) -> None:
        store = SendStore(SqlStore(engines[n]))
        comp = compensator(settings, store, replica=f"replica-{n}", batch=10)
        start.wait()
        summaries.append(comp.run_once())

    threads = [threading.Thread(target=replica, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in engines:
        e.dispose()

    asked = Counter(c.params["BizId"] for c in emu.calls("QuerySendDetails"))
    assert set(asked) == biz_ids and max(asked.values()) == 1
    assert sum(s.claimed for s in summaries) == 150
    assert_settled_as_recorded(emu, sends, biz_ids)


def test_lookup_plans_and_counts_every_call(emu, settings, sends) -> None:
    sent = datetime.now(UTC) - timedelta(hours=1)
    seed(emu, sends, [seed_send(emu, "13100000000", sent, f"x{i}") for i in range(3)])
    limiter = CountingLimiter()
    lookup = AliyunStatusLookup(wiring.dysms_client(settings))
    pending = sends.claim_due(domain.Provider.ALIYUN, datetime.now(UTC), timedelta(0), 10)
    result = lookup.lookup(pending, limiter)
    assert result.calls == {"ok": 1} and limiter.acquired == 1
    assert len(result.settlements) == 3


def test_ambiguous_outid_falls_back_to_bizid(emu, settings, sends) -> None:
    sent = datetime.now(UTC) - timedelta(hours=5)
    mine = [seed_send(emu, "13400000000", sent, "a"), seed_send(emu, "13400000000", sent, "b")]
    biz_ids = set(seed(emu, sends, mine))
    emu.seed_sends([seed_send(emu, "13400000000", sent, "a")])  # someone else's, same OutId

    compensator(settings, sends).run_once()

    calls = emu.calls("QuerySendDetails")
    assert ["BizId" in c.params for c in calls] == [False, True]
    assert_settled_as_recorded(emu, sends, biz_ids)


def test_group_query_switches_to_bizid_when_pages_cost_more(emu, settings, sends) -> None:
    sent = datetime.now(UTC) - timedelta(days=1)
    others = [seed_send(emu, "13400000001", sent, f"x{i}") for i in range(160)]  # 4 pages
    emu.seed_sends(others)
    biz_ids = set(
        seed(emu, sends, [seed_send(emu, "13400000001", sent, f"m{i}") for i in range(2)])
    )

    compensator(settings, sends).run_once()

    calls = emu.calls("QuerySendDetails")
    assert [c.params.get("BizId") is not None for c in calls] == [False, True, True]
    assert_settled_as_recorded(emu, sends, biz_ids)


def test_contract_fake_lookup_answers_like_the_real_one(emu, settings, sends) -> None:
    """The in-memory twin used by unit tests plans and settles exactly like the adapter."""
    sent = datetime.now(UTC) - timedelta(hours=4)
    seeds = [
        seed_send(emu, "13700000001", sent, "a"),  # a group with unique OutIds
        seed_send(emu, "13700000001", sent, "b"),
        seed_send(emu, "13700000002", sent, "a"),  # a pair with the same OutId
        seed_send(emu, "13700000002", sent, "a"),
        seed_send(emu, "13700000003", sent),  # a single send
    ]
    seed(emu, sends, seeds)
    pending = sends.claim_due(domain.Provider.ALIYUN, datetime.now(UTC), timedelta(0), 10)
    truths = {(r.biz_id, r.phone_number): Truth(r.status, r.err_code) for r in emu.records()}
    real = AliyunStatusLookup(wiring.dysms_client(settings)).lookup(pending, CountingLimiter())
    fake = FakeLookup(truths).lookup(pending, CountingLimiter())

    key = lambda s: s.send_id  # noqa: E731
    assert sorted(real.settlements, key=key) == sorted(fake.settlements, key=key)
    assert real.calls == fake.calls == {"ok": 4}


@pytest.mark.parametrize(
    ("spec", "calls"),
    [
        (FaultSpec(error_rate=1.0), {"unavailable": 1}),
        (FaultSpec(reset_rate=1.0, seed=1), {"unavailable": 1}),
        (FaultSpec(throttle_rate=1.0), {"throttled": 3}),  # bounded retries, then back off
    ],
    ids=["5xx", "connection-reset", "throttled"],
)
def test_provider_faults_leave_sends_pending_and_counted(emu, settings, sends, spec, calls) -> None:
    sent = datetime.now(UTC) - timedelta(hours=1)
    (biz_id,) = seed(emu, sends, [seed_send(emu, "13900000001", sent)])
    emu.set_faults("dysms", spec)

    summary = compensator(settings, sends).run_once()

    assert summary.calls == calls and summary.providers[0].error is None
    (row,) = sends.by_biz_id(biz_id)
    assert row["status"] == "pending" and row["claimed_by"] is None
    assert row["next_check_at"] is not None and row["check_count"] == 1
