"""Lookups by unique key (receiptd.db.lookup): exact on every backend's terms, and on
PostgreSQL bounded by every key column whatever the statistics say.

The case that read every row of an account per batch: the statistics were taken before the
account had any sends or receipts (a new account in a table analyzed before it started; the
same as a table never analyzed), so the planner believed its rows were a handful and bounded
the index by the account alone, the batch's ids a filter. Each statement the receipt and
registration paths run is re-run under ``EXPLAIN ANALYZE`` and the rows its scans touched
are counted."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from receiptd import domain, ports
from receiptd.db import lookup, migrate
from receiptd.db.engine import create_db_engine
from receiptd.db.models import SEND
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from tests.conftest import create_server_database, drop_server_database, unavailable

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
BATCH = 16
NEW_ROWS = 3000  # the new account's rows, all after the last ANALYZE


def send(i: int, account: str) -> ports.NewSend:
    return ports.NewSend(domain.Provider.ALIYUN, f"b{i}", f"138{i:08d}", NOW, account=account)


def receipt(i: int, account: str) -> ports.ReportRecord:
    report = domain.SmsReport(f"b{i}", f"138{i:08d}", True, NOW, err_code="DELIVERED")
    return ports.ReportRecord(f"m{i}", report, account=account)


def test_a_lookup_finds_exactly_its_keys(engine: sa.Engine) -> None:
    """One SendSms to two numbers (b1 to …01 and …02), b2 to …02, and b1 to …01 again in
    another account: keyed by (id, number) in ``default`` the lookup returns exactly the two
    sends on PostgreSQL, and elsewhere a superset holding them (every combination of the IN
    lists), never another account's."""
    store = SqlStore(engine)
    sends = [send(1, "default"), send(2, "default")]
    sends.append(ports.NewSend(domain.Provider.ALIYUN, "b1", "13800000002", NOW))
    sends.append(ports.NewSend(domain.Provider.ALIYUN, "b1", "13800000001", NOW, account="o"))
    SendStore(store).register(sends, NOW)
    keys = lookup.KeyLookup(SEND, ("provider", "account"), ("matched_by", "biz_id", "phone_number"))
    wanted = {("default", "b1", "13800000001"), ("default", "b2", "13800000002")}
    scope = {"provider": "aliyun", "account": "default"}
    with engine.connect() as conn:
        params = keys.params(conn, scope, sorted(("biz_id", b, p) for _, b, p in wanted))
        rows = conn.execute(keys.rows(conn), params).all()
        nothing = conn.execute(keys.rows(conn), keys.params(conn, scope, [])).all()
    found = {(r.account, r.biz_id, r.phone_number) for r in rows}
    assert wanted <= found and {r.account for r in rows} == {"default"}
    if engine.dialect.name == "postgresql":
        assert found == wanted
    assert nothing == []  # no keys: nothing, on every backend


@pytest.fixture
def stale_postgres() -> Iterator[sa.Engine]:
    """A PostgreSQL database whose statistics predate the account ``new``: 20 accounts
    analyzed (their sends all settled), then ``new``'s sends and receipts written."""
    try:
        url = create_server_database("postgresql")
    except sa.exc.OperationalError as exc:
        unavailable("postgresql", exc)
    engine = create_db_engine(url)
    try:
        migrate.upgrade(engine)
        store = SqlStore(engine)
        for a in range(20):
            SendStore(store).register([send(a * 1000 + i, f"a{a}") for i in range(100)], NOW)
            store.write_batch(
                ports.Batch([receipt(a * 1000 + i, f"a{a}") for i in range(100)]), NOW
            )
        with engine.connect() as conn:
            conn.execute(sa.text("ANALYZE"))
            conn.commit()
        yield engine
    finally:
        engine.dispose()
        drop_server_database("postgresql", url)


class Statements:
    """The reads and updates an engine runs on ``table`` while the block runs."""

    def __init__(self, engine: sa.Engine, table: str) -> None:
        self.engine, self.table, self.seen = engine, table, []

    def __enter__(self) -> Statements:
        sa.event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *_: object) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._record)

    def _record(self, _conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        statement = statement.lstrip()
        reads = statement.startswith("SELECT") and re.search(rf"FROM {self.table}\b", statement)
        if reads or statement.startswith(f"UPDATE {self.table} "):
            self.seen.append((statement, params))

    def rows_touched(self) -> list[int]:
        """Per statement: the rows its scans returned or filtered out, re-run under
        ``EXPLAIN ANALYZE`` (rolled back)."""
        touched = []
        with self.engine.connect() as conn:
            for statement, params in self.seen:
                plan = conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, params)
                touched.append(_scanned(json.loads(json.dumps(plan.scalar_one()))[0]["Plan"]))
                conn.rollback()
        return touched


def _scanned(node: dict[str, Any]) -> int:
    rows = 0
    if "Scan" in node["Node Type"] and node["Node Type"] != "Function Scan":
        loops = node.get("Actual Loops", 1)
        rows = (node["Actual Rows"] + node.get("Rows Removed by Filter", 0)) * loops
    return rows + sum(_scanned(child) for child in node.get("Plans", ()))


def test_a_receipt_batch_of_a_new_account_reads_only_its_sends(
    stale_postgres: sa.Engine,
) -> None:
    store = SqlStore(stale_postgres)
    SendStore(store).register([send(50_000 + i, "new") for i in range(NEW_ROWS)], NOW)
    with Statements(stale_postgres, "sms_send") as statements:
        result = store.write_batch(
            ports.Batch([receipt(50_000 + i, "new") for i in range(BATCH)]), NOW
        )
    assert result.sends_settled == BATCH
    kinds = sorted({statement.split()[0] for statement, _ in statements.seen})
    assert kinds == ["SELECT", "UPDATE"], kinds  # the lock, the settle
    # Before: the lock's IN lists read every send of "new", the settling UPDATE's status
    # guard every pending send (the statistics say none is pending).
    assert max(statements.rows_touched()) <= 2 * BATCH


def test_registering_sends_of_a_new_account_reads_only_their_receipts(
    stale_postgres: sa.Engine,
) -> None:
    """A receipt can beat its send: registration looks up the stored receipts of its sends."""
    store = SqlStore(stale_postgres)
    for first in range(0, NEW_ROWS, 500):
        store.write_batch(
            ports.Batch([receipt(60_000 + i, "new") for i in range(first, first + 500)]), NOW
        )
    with Statements(stale_postgres, "sms_report") as statements:
        SendStore(store).register([send(60_000 + i, "new") for i in range(BATCH)], NOW)
    assert statements.seen, "registration read no receipt"
    assert max(statements.rows_touched()) <= 2 * BATCH
    with stale_postgres.connect() as conn:
        settled = conn.execute(
            sa.select(sa.func.count()).where(SEND.c.account == "new", SEND.c.status == "delivered")
        )
        assert settled.scalar_one() == BATCH


def test_the_status_api_finds_a_send_by_its_id_without_reading_the_others(
    stale_postgres: sa.Engine,
) -> None:
    """``GET /v1/sends/{biz_id}`` (SendStore.by_biz_id): no index begins with biz_id, so the
    id alone was a sequential scan of every send (2,000 + 3,000 rows here)."""
    store = SqlStore(stale_postgres)
    sends = SendStore(store)
    sends.register([send(50_000 + i, "new") for i in range(NEW_ROWS)], NOW)
    sends.register([send(50_007, "a3")], NOW)  # the same id in another account
    with Statements(stale_postgres, "sms_send") as statements:
        found = sends.by_biz_id("b50007")
        narrowed = sends.by_biz_id("b50007", account="new")
        kind = sends.by_biz_id("b50007", matched_by=domain.SendKey.MESSAGE_ID)
    assert [r["account"] for r in found] == ["a3", "new"]
    assert [r["account"] for r in narrowed] == ["new"] and kind == []
    assert len(statements.seen) == 3
    assert max(statements.rows_touched()) <= 4
