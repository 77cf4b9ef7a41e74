"""Retention on SQLite, PostgreSQL and MariaDB: what goes, what stays, batches, one replica."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from receiptd import domain, metrics, ports
from receiptd.db import locks, retention
from receiptd.db.models import DEAD, INBOUND, REPORT, RUN, SEND
from receiptd.db.prune import Pruner
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
PHONE = "13800000001"


def populate(engine: sa.Engine, ages_days: tuple[int, ...] = (1, 89, 91, 200)) -> None:
    """Per age: a delivered send with its receipt, a pending send, a reply, a dead letter
    and a compensator run, all that many days old."""
    store = SqlStore(engine)
    sends = SendStore(store)
    for age in ages_days:
        at = NOW - timedelta(days=age)
        sends.register(
            [
                ports.NewSend(domain.Provider.ALIYUN, f"d{age}", PHONE, at),
                ports.NewSend(domain.Provider.ALIYUN, f"p{age}", PHONE, at),
            ],
            at,
        )
        report = domain.SmsReport(f"d{age}", PHONE, True, at)
        reply = domain.SmsUp(PHONE, "hi", at, "1234", f"s{age}")
        dead = ports.DeadRecord("q", f"m{age}", b"\xff", "bad")
        batch = ports.Batch(
            reports=[ports.ReportRecord(f"r{age}", report)],
            inbound=[ports.InboundRecord(f"u{age}", reply)],
            dead=[dead],
        )
        store.write_batch(batch, at)
        sends.finish_run(sends.start_run("r", at), at)


def counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        count = sa.select(sa.func.count())
        return {
            t.name: int(conn.execute(count.select_from(t)).scalar_one())
            for t in (SEND, REPORT, INBOUND, DEAD, RUN)
        }


def cutoffs(days: int = 90, **overrides: int) -> list[retention.Cutoff]:
    return retention.cutoffs(retention.days_per_table(days, overrides), NOW)


def test_prune_removes_only_what_retention_allows_in_batches(engine: sa.Engine) -> None:
    populate(engine)
    before = metrics.PRUNED.labels("sms_report")._value.get()
    pruner = Pruner(engine, batch_size=1)
    assert pruner.count(cutoffs()) == {
        "sms_send": 2,  # the delivered sends of 91 and 200 days; pending sends never go
        "sms_report": 2,
        "sms_inbound": 2,
        "dead_letter": 2,
        "compensator_run": 2,
    }
    result = pruner.run(cutoffs(sms_inbound=0))
    assert result.deleted == {
        "sms_send": 2,
        "sms_report": 2,
        "sms_inbound": 0,  # kept forever
        "dead_letter": 2,
        "compensator_run": 2,
    }
    assert counts(engine) == {
        "sms_send": 6,  # 2 delivered (1, 89 days) + 4 pending of every age
        "sms_report": 2,
        "sms_inbound": 4,
        "dead_letter": 2,
        "compensator_run": 2,
    }
    with engine.connect() as conn:
        left = {r.biz_id for r in conn.execute(sa.select(SEND.c.biz_id))}
    assert left == {"d1", "d89", "p1", "p89", "p91", "p200"}
    assert metrics.PRUNED.labels("sms_report")._value.get() == before + 2
    assert pruner.run(cutoffs()).deleted["sms_report"] == 0  # idempotent


def test_a_second_replica_skips_while_one_prunes(engine: sa.Engine) -> None:
    populate(engine, (200,))
    pruner = Pruner(engine)
    with locks.held(engine, locks.PRUNE, wait=False) as got:
        assert got
        result = pruner.run(cutoffs())
        if engine.dialect.name == "sqlite":  # a single writer: no second replica to keep off
            assert not result.skipped
            return
        assert result.skipped and result.deleted == {}
    assert counts(engine)["sms_report"] == 1
    assert pruner.run(cutoffs()).deleted["sms_report"] == 1  # the lock was released


def test_stop_ends_a_prune_between_batches(engine: sa.Engine) -> None:
    populate(engine, (100, 150, 200))
    beats: list[int] = []
    pruner = Pruner(engine, batch_size=1)
    pruner.heartbeat = lambda: (beats.append(1), pruner.stop())  # type: ignore[assignment]
    result = pruner.run(cutoffs())
    assert result.stopped and result.deleted == {"sms_send": 1} and len(beats) == 1


def test_prune_command_dry_run_and_table_selection(db_url: str, engine: sa.Engine) -> None:
    populate(engine, (1, 400))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIPTD_")}
    env |= {"RECEIPTD_DATABASE_URL": db_url, "RECEIPTD_RETENTION_DAYS_DEAD_LETTER": "0"}

    def receiptd(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "receiptd", "prune", *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, check=False)

    dry = receiptd("--dry-run")
    assert dry.returncode == 0, dry.stderr
    lines = {line.split()[0]: line for line in dry.stdout.splitlines()}
    assert "would delete            1 rows" in lines["sms_report"]
    assert "kept forever" in lines["dead_letter"]
    assert counts(engine)["sms_report"] == 2  # nothing deleted

    only = receiptd("--table", "sms_report")
    assert only.returncode == 0, only.stderr
    assert list(lines) != [line.split()[0] for line in only.stdout.splitlines()]
    assert only.stdout.split()[:4] == ["sms_report", "deleted", "1", "rows"]
    assert '"event": "prune_finished"' in only.stderr or "prune_finished" in only.stderr
    assert counts(engine)["sms_report"] == 1 and counts(engine)["sms_inbound"] == 2
    bad = receiptd("--table", "nope")
    assert bad.returncode == 2 and "nope" in bad.stderr
