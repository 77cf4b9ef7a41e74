"""Thirty simulated days on a controlled clock (no sleeping), on SQLite and PostgreSQL.

Sends are registered every cycle; receipts arrive with realistic delays, some duplicated,
some lost, some after the horizon; the compensator runs every cycle with the 72-hour horizon
against the in-process ``FakeLookup`` (the emulator keeps the wall clock, so it cannot serve
30 days in seconds; the adapters are proven against it elsewhere), and the pruner runs daily.
At the end:

* every send was settled exactly once: the settle transitions the store counted (row counts
  of its guarded UPDATEs) equal the sends no longer pending, plus one per expired send that a
  late receipt overturned, and nothing else;
* a send that never settles cost at most 10 calls and ended ``expired``/``horizon``;
* the tables hold only what retention allows, and no pending send was removed.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from receiptd import domain, ports
from receiptd.compensation import horizon
from receiptd.compensation.cycle import Compensator
from receiptd.db import retention
from receiptd.db.models import DEAD, INBOUND, REPORT, RUN, SEND
from receiptd.db.prune import Pruner
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd.testing.lookups import CountingLimiter, FakeLookup, Truth

START = datetime(2026, 10, 1, tzinfo=UTC)
DAYS = 30
STEP = timedelta(seconds=1800)  # compensator_interval (and base backoff)
SENDS_PER_STEP = 3  # ~4,300 sends over 30 days
HORIZON = timedelta(hours=72)
RETENTION = {"sms_send": 20, "sms_report": 7, "sms_inbound": 7, "dead_letter": 7}
RETENTION_DEFAULT = 3  # compensator_run
ALIYUN = domain.Provider.ALIYUN


@dataclass(frozen=True, slots=True)
class Fate:
    kind: str  # receipt | lost | never | late
    status: int  # the provider's final SendStatus: 3 delivered, 2 failed
    receipt_after: timedelta | None


def fate(rng: random.Random) -> Fate:
    status = 3 if rng.random() < 0.95 else 2
    roll = rng.random()
    if roll < 0.85:  # most receipts within minutes, a tail within hours
        delay = rng.uniform(5, 600) if rng.random() < 0.9 else rng.uniform(3600, 12 * 3600)
        return Fate("receipt", status, timedelta(seconds=delay))
    if roll < 0.95:
        return Fate("lost", status, None)  # receipt lost; a query tells the status
    if roll < 0.985:
        return Fate("never", status, None)  # "waiting for receipt" forever
    return Fate("late", status, timedelta(hours=rng.uniform(80, 120)))  # after the horizon


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Tally:
    """Settle transitions as the store counted them."""

    first: int = 0  # pending → a final status (receipt, query, horizon, window)
    overturned: int = 0  # expired → delivered/failed by a late receipt
    expected_overturns: int = 0  # receipts that found their send expired


@dataclass
class World:
    engine: sa.Engine
    store: SqlStore
    sends: SendStore
    lookup: FakeLookup
    rng: random.Random
    fates: dict[str, Fate]
    inbox: dict[datetime, list[ports.ReportRecord]]
    tally: Tally
    n: int = 0


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_thirty_days_settle_every_send_once_and_keep_only_what_retention_allows(
    engine: sa.Engine,
) -> None:
    clock = Clock()
    store = SqlStore(engine)
    world = World(
        engine, store, SendStore(store), FakeLookup(), random.Random(15), {}, defaultdict(list),
        Tally(),
    )  # fmt: skip
    comp = Compensator(
        world.sends,
        [world.lookup],
        CountingLimiter(),
        grace=timedelta(seconds=300),
        batch_size=500,
        base_backoff=STEP.total_seconds(),
        max_backoff=6 * 3600.0,
        replica="sim",
        clock=clock,
        horizons={ALIYUN: HORIZON},
    )
    pruner = Pruner(engine, batch_size=200)
    days = retention.days_per_table(RETENTION_DEFAULT, RETENTION)
    pruned = Counter[str]()
    while clock.now < START + timedelta(days=DAYS):
        _send(world, clock.now)
        _deliver(world, clock.now)
        world.tally.first += sum(comp.run_once().settled.values())
        if clock.now.hour == 0 and clock.now.minute == 0:
            pruned.update(pruner.run(retention.cutoffs(days, clock.now)).deleted)
        clock.now += STEP
    end = clock.now
    pruned.update(pruner.run(retention.cutoffs(days, end)).deleted)

    rows = {r.biz_id: r for r in _rows(engine)}
    pending = sum(1 for r in rows.values() if r.status == "pending")
    tally = world.tally
    assert tally.first == len(world.fates) - pending  # each send settled once, none twice
    assert tally.overturned == tally.expected_overturns > 0
    _assert_fates(world, rows, end)
    _assert_retention(engine, days, end, pruned, world, rows)


def _send(world: World, now: datetime) -> None:
    rng, new = world.rng, []
    for _ in range(SENDS_PER_STEP):
        world.n += 1
        biz, phone = f"{world.n}^0", f"138{world.n:08d}"
        sent = now - timedelta(seconds=rng.uniform(0, STEP.total_seconds()))
        world.fates[biz] = f = fate(rng)
        new.append(ports.NewSend(ALIYUN, biz, phone, sent, out_id=f"o{world.n}"))
        known = f.kind in ("receipt", "lost")  # the provider has the final status at once
        world.lookup.truths[(biz, phone)] = Truth(f.status if known else 1, "DELIVERED")
        if f.receipt_after is None:
            continue
        report = domain.SmsReport(biz, phone, f.status == 3, sent, err_code="DELIVERED")
        # Receipts are not idempotent (docs/providers/aliyun-mns.md, "Bodies").
        copies = 2 if rng.random() < 0.05 else 1
        for copy in range(copies):
            arrival = _step_of(sent + f.receipt_after + timedelta(minutes=copy * 7))
            world.inbox[arrival].append(ports.ReportRecord(f"m{world.n}-{copy}", report))
    world.sends.register(new, now)


def _deliver(world: World, now: datetime) -> None:
    due = world.inbox.pop(_step_of(now), [])
    for record in due:  # from now on a query tells what the receipt says
        r = record.report
        world.lookup.truths[(r.biz_id, r.phone_number)] = Truth(3 if r.success else 2)
    before = _statuses(world.engine, {r.report.biz_id for r in due})
    reply = domain.SmsUp("13800000000", "TD", now, "1", f"s{now.timestamp():.0f}")
    dead = ports.DeadRecord("q", f"bad{now.timestamp():.0f}", b"\x00", "bad")
    batch = ports.Batch(
        reports=due,
        inbound=[ports.InboundRecord(f"u{now}", reply)],
        dead=[dead] if world.rng.random() < 0.1 else [],
    )
    settled = world.store.write_batch(batch, now).sends_settled
    overturns = sum(1 for status in before.values() if status == "expired")
    firsts = sum(1 for status in before.values() if status == "pending")
    world.tally.expected_overturns += overturns
    world.tally.overturned += settled - min(settled, firsts)
    world.tally.first += min(settled, firsts)


def _statuses(engine: sa.Engine, biz_ids: set[str]) -> dict[str, str]:
    if not biz_ids:
        return {}
    query = sa.select(SEND.c.biz_id, SEND.c.status).where(SEND.c.biz_id.in_(sorted(biz_ids)))
    with engine.connect() as conn:
        return {row.biz_id: row.status for row in conn.execute(query)}


def _step_of(moment: datetime) -> datetime:
    steps = -(-(moment - START) // STEP)  # the first simulation step at or after it
    return START + steps * STEP


def _rows(engine: sa.Engine) -> list[sa.Row[object]]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(SEND)))


def _assert_fates(world: World, rows: dict[str, sa.Row[object]], end: datetime) -> None:
    calls = Counter(s.biz_id for q in world.lookup.calls for s in q.sends)
    never = [b for b, f in world.fates.items() if f.kind == "never"]
    assert max(calls[b] for b in never) <= horizon.MAX_CALLS
    for biz, row in rows.items():
        f = world.fates[biz]
        final = "delivered" if f.status == 3 else "failed"
        old = row.sent_at + HORIZON + STEP <= end
        if f.kind == "never":
            assert (row.status, row.settled_by) == (
                ("expired", "horizon") if old else ("pending", None)
            ), biz
            assert calls[biz] == horizon.MAX_CALLS or not old, (biz, calls[biz])
        elif f.kind == "lost":
            assert (row.status, row.settled_by) == (final, "query"), biz
        elif f.kind == "receipt":
            assert row.status == final and row.settled_by in ("receipt", "query"), biz
        elif row.sent_at + (f.receipt_after or HORIZON) + STEP <= end:  # late, receipt came
            assert (row.status, row.settled_by) == (final, "receipt"), biz


def _assert_retention(
    engine: sa.Engine,
    days: dict[str, int],
    end: datetime,
    pruned: Counter[str],
    world: World,
    rows: dict[str, sa.Row[object]],
) -> None:
    def oldest(column: sa.Column[datetime]) -> datetime:
        with engine.connect() as conn:
            return conn.execute(sa.select(sa.func.min(column))).scalar_one()  # type: ignore[no-any-return]

    limit = {t: end - timedelta(days=d) for t, d in days.items()}
    assert oldest(REPORT.c.received_at) >= limit["sms_report"]
    assert oldest(INBOUND.c.received_at) >= limit["sms_inbound"]
    assert oldest(DEAD.c.last_seen) >= limit["dead_letter"]
    assert oldest(RUN.c.started_at) >= limit["compensator_run"]
    assert all(r.status == "pending" or r.settled_at >= limit["sms_send"] for r in rows.values())
    gone = [b for b in world.fates if b not in rows]
    assert len(gone) == pruned["sms_send"] > 0  # only pruned sends are missing …
    with engine.connect() as conn:
        for table in (REPORT, INBOUND, DEAD, RUN):
            assert pruned[table.name] > 0
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() > 0
    first_kept = min(r.sent_at for r in rows.values())
    assert first_kept < limit["sms_send"]  # … and those were all settled before the limit
