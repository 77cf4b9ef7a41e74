"""One contract, two send stores: ``InMemorySendStore`` and the SQL store on every database.

The compensator's unit tests run on the in-memory twin; this suite is what makes that honest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest

from receiptd import domain, ports
from receiptd.db.engine import create_db_engine
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd.testing import InMemorySendStore
from tests.conftest import BACKENDS, emptied_database

NOW = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)  # 12:00 in China
ALIYUN, HUAWEI = domain.Provider.ALIYUN, domain.Provider.HUAWEI
GRACE = timedelta(minutes=5)
DELIVERED, FAILED, EXPIRED = (
    domain.SendStatus.DELIVERED,
    domain.SendStatus.FAILED,
    domain.SendStatus.EXPIRED,
)


class Store:
    """The store under test plus the by_biz_id view both implementations offer."""

    def __init__(self, store: ports.SendStore) -> None:
        self.port = store
        self._view = store

    def row(self, biz_id: str) -> dict[str, object]:
        (row,) = self._view.by_biz_id(biz_id)  # type: ignore[attr-defined]
        return dict(row)


@pytest.fixture(params=["memory", *BACKENDS])
def store(
    request: pytest.FixtureRequest,
    database_urls: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Store]:
    if request.param == "memory":
        yield Store(InMemorySendStore())
        return
    engine = create_db_engine(emptied_database(request.param, database_urls, tmp_path_factory))
    yield Store(SendStore(SqlStore(engine)))
    engine.dispose()


def send(
    biz_id: str, age: timedelta, phone: str = "13800000001", provider=ALIYUN, account="default"
) -> ports.NewSend:
    return ports.NewSend(provider, biz_id, phone, NOW - age, out_id=f"o-{biz_id}", account=account)


def claim(store: Store, limit: int = 100, now: datetime = NOW, provider=ALIYUN):
    return store.port.claim_due(provider, now, GRACE, limit)


def test_register_is_idempotent_and_keeps_the_11_digit_form(store: Store) -> None:
    hour = timedelta(hours=1)
    assert store.port.register([send("a", hour, "+8613800000001")], NOW) == 1
    assert store.port.register([send("a", hour, "13800000001"), send("b", hour)], NOW) == 1
    assert store.row("a")["phone_number"] == "13800000001"
    assert store.row("a")["status"] == "pending" and store.row("a")["check_count"] == 0


def test_claim_takes_due_sends_oldest_first_up_to_the_limit(store: Store) -> None:
    store.port.register(
        [
            send("young", timedelta(minutes=1)),  # inside the grace period
            send("mid", timedelta(hours=1)),
            send("old", timedelta(hours=2)),
            send("hw", timedelta(hours=3), provider=HUAWEI),
        ],
        NOW,
    )
    first = claim(store, limit=1)
    assert [s.biz_id for s in first] == ["old"]
    assert first[0].send_date == date(2026, 11, 25) and first[0].out_id == "o-old"
    assert [s.biz_id for s in claim(store)] == ["mid"]  # "old" is held by the first claim
    assert claim(store) == []
    assert [s.biz_id for s in claim(store, provider=HUAWEI)] == ["hw"]


def test_claim_and_peek_return_whole_sends_equal_on_every_store(store: Store) -> None:
    """Every field of a claimed send, as registered (the SQL store maps rows by position:
    a column order drifting from PendingSend's fields fails here), sent_at aware in UTC."""
    globe = ports.NewSend(
        ALIYUN, "MSG-1", "85291234567", NOW - timedelta(hours=2), out_id="o-g",
        template_code="SMS_1", account="intl", matched_by=domain.SendKey.MESSAGE_ID,
    )  # fmt: skip
    store.port.register([globe, send("b", timedelta(hours=1))], NOW)
    expected = [
        ports.PendingSend(
            0, ALIYUN, "MSG-1", "85291234567", NOW - timedelta(hours=2), date(2026, 11, 25),
            "o-g", "SMS_1", 0, "intl", domain.SendKey.MESSAGE_ID,
        ),
        ports.PendingSend(
            0, ALIYUN, "b", "13800000001", NOW - timedelta(hours=1), date(2026, 11, 25),
            "o-b", None, 0, "default", domain.SendKey.BIZ_ID,
        ),
    ]  # fmt: skip
    peeked = store.port.peek_due(ALIYUN, NOW, GRACE, 10, account="intl")
    peeked += store.port.peek_due(ALIYUN, NOW, GRACE, 10)
    claimed = store.port.claim_due(ALIYUN, NOW, GRACE, 10, account="intl") + claim(store)
    for got in (peeked, claimed):
        assert [dataclasses.replace(s, id=0) for s in got] == expected
        assert all(s.sent_at.utcoffset() == timedelta(0) for s in got)
        assert len({s.id for s in got}) == 2


def test_a_claim_is_a_lease(store: Store) -> None:
    store.port.register([send("a", timedelta(hours=1))], NOW)
    assert len(claim(store)) == 1
    assert claim(store, now=NOW + ports.CLAIM_LEASE - timedelta(seconds=1)) == []
    assert len(claim(store, now=NOW + ports.CLAIM_LEASE + timedelta(seconds=1))) == 1


def test_peek_reads_what_claim_would_take_without_taking_it(store: Store) -> None:
    store.port.register([send("a", timedelta(hours=1)), send("b", timedelta(hours=2))], NOW)
    peeked = store.port.peek_due(ALIYUN, NOW, GRACE, 10)
    assert [s.biz_id for s in peeked] == ["b", "a"]
    assert [s.biz_id for s in claim(store)] == ["b", "a"]


def test_settle_finals_and_backs_off_the_rest(store: Store) -> None:
    store.port.register([send("d", timedelta(hours=1)), send("p", timedelta(hours=1))], NOW)
    claimed = {s.biz_id: s for s in claim(store)}
    settled = store.port.settle(
        [ports.Settlement(claimed["d"].id, DELIVERED, err_code="DELIVERED")],
        list(claimed.values()),
        NOW,
        300.0,
        3600.0,
    )
    assert settled == 1
    d, p = store.row("d"), store.row("p")
    assert (d["status"], d["settled_by"], d["err_code"]) == ("delivered", "query", "DELIVERED")
    assert d["claimed_by"] is None and d["check_count"] == 1
    assert (p["status"], p["claimed_by"], p["check_count"]) == ("pending", None, 1)
    assert p["next_check_at"] == NOW + timedelta(seconds=300)
    assert claim(store, now=NOW + timedelta(seconds=299)) == []
    (again,) = claim(store, now=NOW + timedelta(seconds=300))
    assert again.check_count == 1


def test_a_final_status_never_changes(store: Store) -> None:
    store.port.register([send("a", timedelta(hours=1))], NOW)
    (a,) = claim(store)
    assert store.port.settle([ports.Settlement(a.id, DELIVERED)], [a], NOW, 300.0, 3600.0) == 1
    later = NOW + timedelta(minutes=1)
    assert store.port.settle([ports.Settlement(a.id, FAILED)], [a], later, 300.0, 3600.0) == 0
    row = store.row("a")
    assert row["status"] == "delivered" and row["check_count"] == 1
    assert claim(store, now=NOW + timedelta(days=1)) == []


def test_a_backoff_leaves_a_send_settled_since_its_claim_alone(store: Store) -> None:
    """A claimer whose lookup still said pending (or whose lease ran out) backs off a send
    that something else settled meanwhile: the verdict, its counters and schedule stay."""
    store.port.register([send("a", timedelta(hours=1))], NOW)
    (a,) = claim(store)
    assert store.port.settle([ports.Settlement(a.id, DELIVERED)], [a], NOW, 300.0, 3600.0) == 1
    before = store.row("a")
    assert store.port.settle([], [a], NOW + timedelta(minutes=1), 300.0, 3600.0) == 0
    assert store.row("a") == before


def test_expiry_outside_the_window_touches_only_old_pending_sends_of_that_provider(
    store: Store,
) -> None:
    store.port.register(
        [
            send("old", timedelta(days=40)),
            send("settled", timedelta(days=40), phone="13800000002"),
            send("new", timedelta(days=2)),
            send("hw", timedelta(days=40), provider=HUAWEI),
        ],
        NOW,
    )
    settled = next(s for s in claim(store) if s.biz_id == "settled")
    store.port.settle([ports.Settlement(settled.id, FAILED)], [], NOW, 300.0, 3600.0)
    assert store.port.expire_outside_window(ALIYUN, date(2026, 10, 26), NOW) == 1
    assert (store.row("old")["status"], store.row("old")["settled_by"]) == ("expired", "window")
    assert store.row("old")["claimed_by"] is None
    assert store.row("settled")["status"] == "failed"
    assert store.row("new")["status"] == "pending" and store.row("hw")["status"] == "pending"


def test_runs_and_the_summary(store: Store) -> None:
    store.port.register(
        [send("a", timedelta(hours=3)), send("b", timedelta(hours=1)), send("c", timedelta(0))],
        NOW,
    )
    (a, *_) = claim(store)
    store.port.settle([ports.Settlement(a.id, EXPIRED, domain.SettledBy.WINDOW)], [], NOW, 1, 1)
    run = store.port.start_run("replica-1", NOW)
    store.port.finish_run(run, NOW + timedelta(seconds=2), claimed=2, calls=1)
    summary = store.port.summary()
    assert summary.counts == {
        ("aliyun", "default", "expired"): 1,
        ("aliyun", "default", "pending"): 2,
    }
    assert summary.oldest_pending == {("aliyun", "default"): NOW - timedelta(hours=1)}
    assert summary.by_provider() == {("aliyun", "expired"): 1, ("aliyun", "pending"): 2}
    assert summary.last_run_started == NOW
    assert summary.last_run_finished == NOW + timedelta(seconds=2)


def test_expired_gives_way_to_a_later_verdict_and_delivered_does_not(store: Store) -> None:
    store.port.register([send("e", timedelta(hours=1)), send("d", timedelta(hours=1), "2")], NOW)
    claimed = {s.biz_id: s for s in claim(store)}
    horizon = domain.SettledBy.HORIZON
    first = [
        ports.Settlement(claimed["e"].id, EXPIRED, horizon),
        ports.Settlement(claimed["d"].id, DELIVERED),
    ]
    assert store.port.settle(first, [], NOW, 300.0, 3600.0) == 2
    later = [
        ports.Settlement(claimed["e"].id, DELIVERED, domain.SettledBy.RECEIPT),
        ports.Settlement(claimed["d"].id, FAILED, domain.SettledBy.RECEIPT),
    ]
    assert store.port.settle(later, [], NOW + timedelta(hours=1), 300.0, 3600.0) == 1
    assert (store.row("e")["status"], store.row("e")["settled_by"]) == ("delivered", "receipt")
    assert (store.row("d")["status"], store.row("d")["settled_by"]) == ("delivered", "query")


def test_a_backoff_never_reaches_past_the_horizon(store: Store) -> None:
    store.port.register([send("h", timedelta(hours=71))], NOW)  # 1 h before a 72 h horizon
    (h,) = claim(store)
    store.port.settle([], [h], NOW, 6 * 3600.0, 6 * 3600.0, horizon=timedelta(hours=72))
    assert store.row("h")["next_check_at"] == NOW + timedelta(hours=1)


# --- accounts (issue 23): the same key in two accounts is two sends, each its own -----------


def test_the_same_key_in_two_accounts_is_two_sends_claimed_and_settled_apart(store: Store) -> None:
    hour = timedelta(hours=1)
    assert (
        store.port.register([send("same", hour), send("same", hour, account="brand_b")], NOW) == 2
    )
    assert store.port.register([send("same", hour, account="brand_b")], NOW) == 0

    (mine,) = store.port.claim_due(ALIYUN, NOW, GRACE, 10, account="brand_b")
    assert mine.account == "brand_b" and mine.biz_id == "same"
    assert store.port.claim_due(ALIYUN, NOW, GRACE, 10, account="brand_b") == []
    (theirs,) = store.port.peek_due(ALIYUN, NOW, GRACE, 10)  # the default account's
    assert theirs.account == "default" and theirs.id != mine.id

    store.port.settle([ports.Settlement(mine.id, DELIVERED)], [mine], NOW, 1, 1)
    rows = {r["account"]: r["status"] for r in store._view.by_biz_id("same")}  # type: ignore[attr-defined]
    assert rows == {"brand_b": "delivered", "default": "pending"}
    only = store._view.by_biz_id("same", account="default")  # type: ignore[attr-defined]
    assert [(r["account"], r["status"]) for r in only] == [("default", "pending")]
    assert store.port.summary().counts == {
        ("aliyun", "brand_b", "delivered"): 1,
        ("aliyun", "default", "pending"): 1,
    }


def test_expiry_outside_the_window_is_per_account(store: Store) -> None:
    old = timedelta(days=40)
    store.port.register([send("old", old), send("old", old, account="brand_b")], NOW)
    assert store.port.expire_outside_window(ALIYUN, date(2026, 10, 26), NOW, account="brand_b") == 1
    statuses = {r["account"]: r["status"] for r in store._view.by_biz_id("old")}  # type: ignore[attr-defined]
    assert statuses == {"brand_b": "expired", "default": "pending"}
    assert store.port.summary().oldest_pending == {("aliyun", "default"): NOW - old}
