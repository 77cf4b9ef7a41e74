"""The send counts (receiptd.db.counts) stay exactly ``count(*)`` of ``sms_send`` per (provider,
account, status, settled_by) under concurrent writers: registrations, receipts, compensator
settlements, window expiry, late receipts overturning an expiry, prunes and squashes."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from receiptd import domain, ports
from receiptd.db import counts, retention
from receiptd.db.models import SEND, SEND_COUNT
from receiptd.db.prune import Pruner
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=40)  # outside the query window: expired by window
ACCOUNTS = ("default", "brand_b")


def truth(engine: sa.Engine) -> dict[counts.Key, int]:
    """What the counts must say: a scan of sms_send."""
    columns = (SEND.c.provider, SEND.c.account, SEND.c.status, SEND.c.settled_by)
    query = sa.select(*columns, sa.func.count()).group_by(*columns)
    with engine.connect() as conn:
        return {(p, a, s, by or ""): int(n) for p, a, s, by, n in conn.execute(query)}


def counted(engine: sa.Engine) -> dict[counts.Key, int]:
    with engine.connect() as conn:
        return counts.totals(conn)


def send(i: int, account: str, at: datetime = NOW) -> ports.NewSend:
    return ports.NewSend(domain.Provider.ALIYUN, f"b{i}", f"1380000{i:04d}", at, account=account)


def receipt(i: int, account: str, success: bool, at: datetime = NOW) -> ports.ReportRecord:
    report = domain.SmsReport(f"b{i}", f"1380000{i:04d}", success, at, err_code="E" * (i % 2))
    return ports.ReportRecord(f"m{i}-{success}", report, account=account)


def test_registration_settlement_and_prune_keep_counts_exact(engine: sa.Engine) -> None:
    store = SqlStore(engine)
    sends = SendStore(store)
    sends.register([send(i, "default") for i in range(6)], NOW)
    sends.register([send(i, "default") for i in range(6)], NOW)  # known: nothing added
    store.write_batch(ports.Batch(reports=[receipt(0, "default", True)]), NOW)
    store.write_batch(ports.Batch(reports=[receipt(1, "default", False)]), NOW)
    store.write_batch(ports.Batch(reports=[receipt(1, "default", True)]), NOW)  # final stays
    assert (
        counted(engine)
        == truth(engine)
        == {
            ("aliyun", "default", "pending", ""): 4,
            ("aliyun", "default", "delivered", "receipt"): 1,
            ("aliyun", "default", "failed", "receipt"): 1,
        }
    )
    cut = retention.cutoffs(retention.days_per_table(1, {}), NOW + timedelta(days=2))
    Pruner(engine).run(cut)
    assert counted(engine) == truth(engine) == {("aliyun", "default", "pending", ""): 4}
    with engine.begin() as conn:
        assert counts.squash(conn) > 0
    with engine.connect() as conn:
        rows = conn.execute(sa.select(sa.func.count()).select_from(SEND_COUNT)).scalar_one()
    assert rows == 1 and counted(engine) == truth(engine)


def test_an_upgraded_database_starts_from_its_rows(engine: sa.Engine) -> None:
    """Migration 0007 counts what sms_send holds; deltas go on from there."""
    SendStore(SqlStore(engine)).register([send(i, "default") for i in range(3)], NOW)
    with engine.begin() as conn:  # as if counted by the migration: one row per key
        conn.execute(SEND_COUNT.delete())
        conn.execute(
            SEND_COUNT.insert().from_select(
                ["provider", "account", "status", "settled_by", "sends"],
                sa.select(
                    SEND.c.provider,
                    SEND.c.account,
                    SEND.c.status,
                    sa.func.coalesce(SEND.c.settled_by, ""),
                    sa.func.count(),
                ).group_by(SEND.c.provider, SEND.c.account, SEND.c.status, SEND.c.settled_by),
            )
        )
    SqlStore(engine).write_batch(ports.Batch(reports=[receipt(0, "default", True)]), NOW)
    assert counted(engine) == truth(engine)


class World:
    """Registrars, receipt writers, compensator settlements, window expiry, prunes and
    squashes over the same sends of two accounts, each in its own thread."""

    def __init__(self, engine: sa.Engine, n: int) -> None:
        self.engine, self.n = engine, n
        self.store = SqlStore(engine)
        self.sends = SendStore(self.store)
        self.retries: Counter[str] = Counter()
        self._lock = threading.Lock()

    def retrying(self, name: str, op: Callable[[], object]) -> None:
        """As the consumer and the compensator do: a transaction the database aborted (a
        deadlock InnoDB resolves by rolling one back) is retried whole; nothing of it stays."""
        for _ in range(100):
            try:
                op()
                return
            except ports.StoreUnavailable:
                with self._lock:
                    self.retries[name] += 1
        raise AssertionError(f"{name}: 100 attempts aborted")

    def workers(self) -> list[Callable[[], None]]:
        out: list[Callable[[], None]] = [self.prune, self.squash]
        for k, account in enumerate(ACCOUNTS):
            out += [lambda a=account: self.register(a)]
            out += [lambda a=account, k=k: self.receipts(a, k)]
            out += [lambda a=account, k=k: self.receipts(a, k + 10)]
            out += [lambda a=account: self.compensate(a)]
        return out

    def register(self, account: str) -> None:
        for start in range(0, self.n, 25):
            at = [OLD if i % 5 == 0 else NOW for i in range(start, start + 25)]
            batch = [send(i, account, at[i - start]) for i in range(start, start + 25)]
            self.retrying("register", lambda b=batch: self.sends.register(b, NOW))

    def receipts(self, account: str, seed: int) -> None:
        rng = random.Random(seed)
        order = list(range(self.n))
        rng.shuffle(order)
        order = [i for i in order if i % 3]  # a third never gets a receipt: queried or expired
        for start in range(0, len(order), 16):
            chunk = order[start : start + 16]
            records = [receipt(i, account, rng.random() < 0.8) for i in chunk]
            batch = ports.Batch(reports=records)
            self.retrying("receipts", lambda b=batch: self.store.write_batch(b, NOW))

    def compensate(self, account: str) -> None:
        """Claims, settles half and backs off the rest, expires the window; three days after
        the receipts, so the prune (before two days after them) leaves these settlements."""
        later = NOW + timedelta(days=3)
        window = (later - timedelta(days=30)).date()
        aliyun, failed = domain.Provider.ALIYUN, domain.SendStatus.FAILED
        for _ in range(8):
            claimed: list[ports.PendingSend] = []

            def claim(into: list[ports.PendingSend] = claimed) -> None:
                into.extend(self.sends.claim_due(aliyun, later, timedelta(0), 50, account=account))

            self.retrying("claim", claim)
            final = [ports.Settlement(p.id, failed, err_code="Q") for p in claimed[::2]]
            self.retrying(
                "settle", lambda f=final, c=claimed: self.sends.settle(f, c, later, 1.0, 1.0)
            )
            self.retrying(
                "expire",
                lambda: self.sends.expire_outside_window(aliyun, window, later, account=account),
            )

    def prune(self) -> None:
        cut = retention.cutoffs(retention.days_per_table(1, {}), NOW + timedelta(days=2))
        for _ in range(6):
            self.retrying("prune", lambda: Pruner(self.engine, batch_size=20).run(cut))

    def squash(self) -> None:
        for _ in range(10):
            self.retrying("squash", self.sends.squash_counts)


@pytest.mark.timeout(180)
def test_concurrent_writers_leave_the_counts_equal_to_count_star(engine: sa.Engine) -> None:
    errors: list[BaseException] = []

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except BaseException as exc:  # reported below: the test fails
                errors.append(exc)

        return run

    world = World(engine, 300)
    threads = [threading.Thread(target=guarded(w)) for w in world.workers()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    assert not errors, errors
    expected = truth(engine)
    assert sum(expected.values()) > 0, expected
    assert counted(engine) == expected
    print(
        f"\ncounts under concurrent writers on {engine.dialect.name}: {sorted(expected.items())}; "
        f"transactions aborted by the database and retried: {dict(world.retries)}"
    )


def test_a_recount_replaces_the_deltas_with_what_the_table_holds(engine: sa.Engine) -> None:
    store = SqlStore(engine)
    SendStore(store).register([send(i, "brand_b") for i in range(4)], NOW)
    store.write_batch(ports.Batch(reports=[receipt(0, "brand_b", False)]), NOW)
    with engine.begin() as conn:  # rows written around the write paths (a bulk load)
        conn.execute(SEND.update().where(SEND.c.biz_id == "b1").values(status="expired"))
        assert counts.recount(conn) == 3
    assert (
        counted(engine)
        == truth(engine)
        == {
            ("aliyun", "brand_b", "pending", ""): 2,
            ("aliyun", "brand_b", "expired", ""): 1,
            ("aliyun", "brand_b", "failed", "receipt"): 1,
        }
    )
