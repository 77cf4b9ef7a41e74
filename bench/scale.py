"""Scale benchmark: the hot queries on a month of traffic versus an empty database (PostgreSQL).

    .venv/bin/python bench/scale.py                       # 10 M sends + 10 M receipts
    .venv/bin/python bench/scale.py --rows 500000 --explain docs/scale-explain.txt

Two scratch databases on the local PostgreSQL, both migrated to head:

* *full*: ``--rows`` sms_send rows and as many sms_report rows spread over ``--days`` days,
  bulk-loaded with ``COPY`` (psycopg's ``cursor.copy``; secondary indexes dropped during the
  load and rebuilt after it, then ``VACUUM ANALYZE``). Statuses as a month looks with the
  72-hour horizon: ~95 % delivered and ~4.5 % failed by receipt, 0.3 % by query, 0.2 % expired;
  ``--pending-share`` of the last 72 hours' sends still pending and due. Receipts: one per
  send settled by receipt, the rest for sends receiptd never registered (as in production);
* *empty*: the same pending sends (the working set a claim needs) and nothing else.

Measured on both, side by side: claim of 5,000 due sends (``SendStore.claim_due``, p50/p99),
peek (``peek_due``), the consumer's write of a 16-receipt batch that settles 16 sends
(``SqlStore.write_batch``, p50/p99), ``SendStore.summary`` (what ``status --json`` prints) and
the ``receiptd status --json`` command, prune of one day of rows (rows/s; full only), and the
consumer end to end (``receiptd consume`` against the emulator, receipts/s, from
bench/consumer.py). ``--explain`` writes EXPLAIN (ANALYZE, BUFFERS) of every hot statement on
the full database. Both databases are dropped at the end, also when the run fails or is stopped
(``--keep`` keeps them).

A smoke run (tests/bench): ``--rows 20000 --pending-share 0.5 --reps 2 --settle-reps 2
--consumer-receipts 200 --consumer-wait 1``.

The claim alone (its Python cost does not depend on the table's size; issue 26)::

    git archive HEAD | tar -x -C /tmp/base           # an unchanged tree to compare with
    .venv/bin/python bench/scale.py --claim-only --rows 200000 --against /tmp/base

``--claim-only`` builds the full database only and times ``claim_due`` of 5,000 (``--reps``
a round, ``--rounds`` rounds) in a process of its own; ``--against DIR`` times the receiptd
package in DIR too, its rounds alternating with this tree's on the same database, so both
meet the same load.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

import receiptd
from receiptd import domain, ports
from receiptd.daemon import service
from receiptd.daemon.ops import OpsApp, OpsServer, Probes
from receiptd.db import counts, migrate, retention
from receiptd.db.engine import create_db_engine
from receiptd.db.models import REPORT, SEND
from receiptd.db.prune import Pruner
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore

sys.path.insert(0, str(Path(__file__).parent))
import consumer as consumer_bench
import harness  # bench/harness.py

STATS_TOKEN = "scale-bench-stats-token-0123456789"  # noqa: S105 - a local bench server
NOW = datetime.now(UTC).replace(microsecond=0)
ALIYUN = domain.Provider.ALIYUN
GRACE = timedelta(seconds=300)
CONSUMER_BASE = 900_000_000  # bench/consumer.py body(i) keys: biz "{i}^0", phone 138{i:08d}
# The columns each COPY fills, in the order of the lines below; columns added by later
# migrations and missing here are NULL (every column since 0001 is nullable or defaulted).
SEND_COLUMNS = (
    "provider", "biz_id", "phone_number", "out_id", "template_code", "sign_name", "sent_at",
    "send_date", "status", "err_code", "err_msg", "settled_by", "settled_at", "next_check_at",
    "check_count", "claimed_by", "claimed_until", "created_at", "updated_at",
)  # fmt: skip
REPORT_COLUMNS = (
    "mns_message_id", "biz_id", "phone_number", "success", "out_id", "send_time", "report_time",
    "err_code", "err_msg", "sms_size", "received_at",
    "channel", "provider", "message_id", "sign_name", "template_code",  # migration 0003
)  # fmt: skip
assert set(SEND_COLUMNS) <= set(SEND.c.keys()) and set(REPORT_COLUMNS) <= set(REPORT.c.keys())
TS = "%Y-%m-%d %H:%M:%S"


# --- data --------------------------------------------------------------------------------


def fate(i: int, sent: datetime, pending_share: float) -> str:
    """pending | receipt | failed | query | expired, deterministic per row."""
    r = (i * 2654435761 % 100_000) / 100_000
    if NOW - sent < timedelta(hours=72) and r < pending_share:
        return "pending"
    r = (i * 40503 % 100_000) / 100_000
    if r < 0.95:
        return "receipt"
    if r < 0.995:
        return "failed"
    return "query" if r < 0.998 else "expired"


def sent_at(i: int, rows: int, days: int) -> datetime:
    return NOW - timedelta(days=days) + timedelta(seconds=days * 86400 * i / rows)


def send_line(i: int, sent: datetime, kind: str) -> str:
    n = r"\N"
    at = sent.strftime(TS)
    china = sent.astimezone(domain.CHINA_TZ).date().isoformat()
    phone = f"13{i % 1_000_000_000:09d}"
    fields = ["aliyun", f"s{i}^0", phone, f"o{i}", "SMS_1", "receiptd", at, china]
    if kind == "pending":  # due now: next_check_at reached
        fields += ["pending", n, n, n, n, at, str(i % 4)]
    else:
        state, by, code = {
            "receipt": ("delivered", "receipt", "DELIVERED"),
            "failed": ("failed", "receipt", "MK:0001"),
            "query": ("delivered", "query", "DELIVERED"),
            "expired": ("expired", "horizon", n),
        }[kind]
        settled = (sent + timedelta(seconds=8)).strftime(TS)
        fields += [state, code, n, by, settled, n, "0" if by == "receipt" else "3"]
    fields += [n, n, at, at]
    return "\t".join(fields) + "\n"


def report_line(i: int, sent: datetime, kind: str) -> str:
    at = sent.strftime(TS)
    got = (sent + timedelta(seconds=8)).strftime(TS)
    biz = f"s{i}^0" if kind in ("receipt", "failed") else f"u{i}^0"  # unregistered sends
    ok = "f" if kind == "failed" else "t"
    code = "MK:0001" if kind == "failed" else "DELIVERED"
    phone = f"13{i % 1_000_000_000:09d}"
    fields = [f"m{i}", biz, phone, ok, f"o{i}", at, got, code, "ok", "1", got]
    fields += ["mns", "aliyun", r"\N", "receiptd", "SMS_1"]  # channel … template_code
    return "\t".join(fields) + "\n"


def copy_rows(engine: sa.Engine, table: str, columns: Sequence[str], lines: Iterator[str]) -> None:
    """COPY ... FROM STDIN in text format, 64k-line chunks (psycopg's cursor.copy)."""
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:  # type: ignore[attr-defined]
            sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
            with cur.copy(sql) as copy:
                chunk: list[str] = []
                for line in lines:
                    chunk.append(line)
                    if len(chunk) == 65536:
                        copy.write("".join(chunk))
                        chunk.clear()
                if chunk:
                    copy.write("".join(chunk))
        raw.commit()
    finally:
        raw.close()


@contextmanager
def indexes_rebuilt(engine: sa.Engine, tables: tuple[str, ...]) -> Iterator[None]:
    """Drop the secondary (non-unique, non-primary) indexes for a bulk load; rebuild after."""
    query = sa.text(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(:t) "
        "AND indexname LIKE 'ix_%'"
    )
    with engine.begin() as conn:
        defs = list(conn.execute(query, {"t": list(tables)}))
        for name, _ in defs:
            conn.execute(sa.text(f"DROP INDEX {name}"))
    yield
    with engine.begin() as conn:
        conn.execute(sa.text("SET maintenance_work_mem = '512MB'"))
        for _, definition in defs:
            conn.execute(sa.text(definition))


def load(engine: sa.Engine, rows: int, days: int, pending_share: float, full: bool) -> int:
    """Bulk-load; returns the pending sends loaded."""
    pending = [0]

    def sends() -> Iterator[str]:
        for i in range(rows):
            sent = sent_at(i, rows, days)
            kind = fate(i, sent, pending_share)
            pending[0] += kind == "pending"
            if full or kind == "pending":
                yield send_line(i, sent, kind)

    def reports() -> Iterator[str]:
        for i in range(rows):
            sent = sent_at(i, rows, days)
            yield report_line(i, sent, fate(i, sent, pending_share))

    started = time.monotonic()
    with indexes_rebuilt(engine, ("sms_send", "sms_report")):
        copy_rows(engine, "sms_send", SEND_COLUMNS, sends())
        if full:
            copy_rows(engine, "sms_report", REPORT_COLUMNS, reports())
    if sa.inspect(engine).has_table("sms_send_count"):  # at 0007 or later (bench/migration.py
        with engine.begin() as conn:  # loads older schemas): COPY bypasses the write paths
            counts.recount(conn)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
    print(f"  loaded in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return pending[0]


def register_consumer_sends(sends: SendStore, n: int) -> None:
    """Pending sends for the consumer run's receipts (bench/consumer.py body(i) keys)."""
    new = [
        ports.NewSend(ALIYUN, f"{i}^0", f"138{i:08d}", NOW)
        for i in range(CONSUMER_BASE, CONSUMER_BASE + n)
    ]
    for k in range(0, n, 10_000):
        sends.register(new[k : k + 10_000], NOW)


# --- measurements ------------------------------------------------------------------------


def timed(fn: Callable[[], Any], reps: int) -> tuple[list[float], Any]:
    samples, result = [], None
    for _ in range(reps):
        t = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - t) * 1000)
    return samples, result


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def release(engine: sa.Engine, claimed: list[ports.PendingSend]) -> None:
    ids = [p.id for p in claimed]
    with engine.begin() as conn:
        for k in range(0, len(ids), 1000):
            conn.execute(
                sa.text(
                    "UPDATE sms_send SET claimed_by = NULL, claimed_until = NULL "
                    "WHERE id = ANY(:ids)"
                ),
                {"ids": ids[k : k + 1000]},
            )


def claim_times(engine: sa.Engine, reps: int, now: datetime = NOW) -> tuple[list[float], int]:
    """``reps`` claims of 5,000 (each released after): ms each, and the sends each claimed."""
    sends = SendStore(SqlStore(engine))
    claims: list[float] = []
    claimed: list[ports.PendingSend] = []
    for _ in range(reps):
        t = time.perf_counter()
        claimed = sends.claim_due(ALIYUN, now, GRACE, 5000)
        claims.append((time.perf_counter() - t) * 1000)
        release(engine, claimed)
    return claims, len(claimed)  # 5,000 unless fewer are pending (small --rows)


def measure(url: str, reps: int, settle_reps: int) -> dict[str, Any]:
    engine = create_db_engine(url)
    store, sends = SqlStore(engine), SendStore(SqlStore(engine))
    out: dict[str, Any] = {}
    try:
        # Once untimed first, as claim_worker does: the connection, SQLAlchemy's compiled
        # statements and PostgreSQL's plan and buffers, which a daemon pays once. Timed with
        # the rest it was their slowest, i.e. the "p99" of 30: 110.5 → 56.1 ms on the empty
        # database, 85.5 → 53.0 on the full one, untimed (docs/scale.md).
        claim_times(engine, 1)
        sends.peek_due(ALIYUN, NOW, GRACE, 5000)
        service.freeze_start_up_objects()  # what `receiptd run` does before its loops start
        out["claim"], out["claimed"] = claim_times(engine, reps)
        out["peek"], _ = timed(lambda: sends.peek_due(ALIYUN, NOW, GRACE, 5000), reps)
        due = sends.peek_due(ALIYUN, NOW, GRACE, 16 * settle_reps)
        assert len(due) >= 16, "too few pending sends for one batch: raise --rows/--pending-share"
        pool = iter(due)
        settles = []
        for _ in range(len(due) // 16):
            batch = ports.Batch(reports=[receipt_of(next(pool)) for _ in range(16)])
            t = time.perf_counter()
            result = store.write_batch(batch, NOW)
            settles.append((time.perf_counter() - t) * 1000)
            assert result.sends_settled == 16
        out["settle"] = settles
        out["summary"], _ = timed(sends.summary, 5)
        out["exact"], _ = timed(lambda: store.run(exact_counts), 5)
        out["stats_http"] = stats_over_http(sends)
        out["status_cli"] = status_cli(url)
    finally:
        engine.dispose()
    return out


def exact_counts(conn: sa.Connection) -> dict[tuple[str, ...], int]:
    """What the summary read before the send counts (migration 0007): count(*) of sms_send
    per (provider, account, status, settled_by)."""
    columns = (SEND.c.provider, SEND.c.account, SEND.c.status, SEND.c.settled_by)
    query = sa.select(*columns, sa.func.count()).group_by(*columns)
    return {tuple(r[:4]): int(r[4]) for r in conn.execute(query)}


def stats_over_http(sends: SendStore, reps: int = 10) -> list[float]:
    """``GET /v1/stats`` of the ops server (as `receiptd run` serves it), over a socket: ms."""
    app = OpsApp(Probes({}, {}), status_token=STATS_TOKEN, summary=sends.summary)
    server = OpsServer(app, "127.0.0.1", 0)
    server.start()
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/v1/stats",
        headers={"Authorization": f"Bearer {STATS_TOKEN}"},
    )
    samples = []
    try:
        for _ in range(reps):
            t = time.perf_counter()
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - local
                assert answer.status == 200
                answer.read()
            samples.append((time.perf_counter() - t) * 1000)
    finally:
        server.close()
    return samples


def receipt_of(send: ports.PendingSend) -> ports.ReportRecord:
    report = domain.SmsReport(send.biz_id, send.phone_number, True, send.sent_at, err_code="D")
    return ports.ReportRecord(f"bench-{send.id}", report)


def status_cli(url: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIPTD_")}
    env["RECEIPTD_DATABASE_URL"] = url
    t = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "receiptd", "status", "--json"],
        env=env, capture_output=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return (time.perf_counter() - t) * 1000


def prune_one_day(url: str, days: int) -> tuple[int, float]:
    """Rows deleted and rows/s when retention is one day shorter than the data."""
    engine = create_db_engine(url)
    try:
        keep = retention.days_per_table(days - 1, {})
        tables = ("sms_send", "sms_report")
        result = Pruner(engine, 5000).run(retention.cutoffs(keep, NOW, tables))
    finally:
        engine.dispose()
    rows = sum(result.deleted.values())
    return rows, rows / result.seconds


def consumer_rate(emu: consumer_bench.Emu, url: str, n: int, tmp: Path) -> float:
    engine = create_db_engine(url)
    try:
        run = consumer_bench.receiptd_run(
            emu, engine, url, n, tmp / f"consume-{uuid.uuid4().hex[:6]}.log", start=CONSUMER_BASE
        )
    finally:
        engine.dispose()
    return run.rate


# --- the claim alone, against another tree -------------------------------------------------


def claim_worker(url: str, reps: int, now: str) -> None:
    """In its own process: one warm-up claim, then ``reps`` timed; JSON on stdout."""
    engine = create_db_engine(url)
    try:
        at = datetime.fromisoformat(now)  # the parent's: it loaded the data relative to it
        claim_times(engine, 1, at)  # the connection, SQLAlchemy's statement cache
        # What the daemon does once started (daemon.service.freeze_start_up_objects), called
        # directly: this worker also runs the --against tree, which may not have that function.
        gc.freeze()
        samples, claimed = claim_times(engine, reps, at)
    finally:
        engine.dispose()
    print(json.dumps({"receiptd": receiptd.__file__, "claim": samples, "claimed": claimed}))


def claim_rounds(url: str, trees: dict[str, Path], reps: int, rounds: int) -> dict[str, Any]:
    """Each tree's receiptd in a process of its own, rounds alternating: ms per claim."""
    samples: dict[str, list[float]] = {label: [] for label in trees}
    claimed = 0
    for _ in range(rounds):
        for label, tree in trees.items():
            env = {**os.environ, "PYTHONPATH": str(tree)}
            command = [sys.executable, __file__, "--claim-worker", url, "--reps", str(reps),
                       "--now", NOW.isoformat()]  # fmt: skip
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            assert done.returncode == 0, done.stderr[-2000:]
            result = json.loads(done.stdout)
            assert Path(result["receiptd"]).is_relative_to(tree), result["receiptd"]
            samples[label] += result["claim"]
            claimed = result["claimed"]
    return {"samples": samples, "claimed": claimed}


def claim_only(args: argparse.Namespace, load_average: harness.Load) -> None:
    here = Path(__file__).resolve().parents[1]
    trees = {f"this tree ({here})": here}
    if args.against:
        trees[f"against ({args.against})"] = args.against.resolve()
    with harness.Scratch(keep=args.keep) as databases:
        url = databases.create("receiptd_scale_claim")
        engine = create_db_engine(url)
        try:
            migrate.upgrade(engine)
            pending = load(engine, args.rows, args.days, args.pending_share, full=True)
        finally:
            engine.dispose()
        result = claim_rounds(url, trees, args.reps, args.rounds)
    print(f"\n{args.rows:,} sms_send + {args.rows:,} sms_report; {pending:,} pending; "
          f"{args.rounds} rounds of {args.reps}; {load_average.line()}\n")  # fmt: skip
    print(f"| claim {result['claimed']:,} due sends | p50 | p99 | min |")
    print("|---|---:|---:|---:|")
    for label, samples in result["samples"].items():
        print(f"| {label} | {pct(samples, 0.5):.1f} ms | {pct(samples, 0.99):.1f} ms "
              f"| {min(samples):.1f} ms |")  # fmt: skip


# --- EXPLAIN ------------------------------------------------------------------------------


@contextmanager
def captured(engine: sa.Engine) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
            statements.append((statement, params[0] if many else params))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


_IN_LIST = re.compile(r"IN \((%\([a-z_0-9]+\)s(?:::[A-Z]+)?)(?:, %\([a-z_0-9]+\)s(?:::[A-Z]+)?)+\)")


def explain(url: str, days: int, path: Path) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of each hot statement, rolled back (nothing changes)."""
    engine = create_db_engine(url)
    store, sends = SqlStore(engine), SendStore(SqlStore(engine))
    ops: dict[str, Callable[[], Any]] = {
        "claim due (claim_due)": lambda: sends.claim_due(ALIYUN, NOW, GRACE, 5000),
        "peek (peek_due)": lambda: sends.peek_due(ALIYUN, NOW, GRACE, 5000),
        "settle from receipts (write_batch of 16)": lambda: store.write_batch(
            ports.Batch(reports=[receipt_of(s) for s in sends.peek_due(ALIYUN, NOW, GRACE, 16)]),
            NOW,
        ),
        "status summary (summary)": sends.summary,
        "prune batch (Pruner)": lambda: Pruner(engine, 5000).run(
            retention.cutoffs(
                retention.days_per_table(days - 1, {}), NOW, ("sms_send", "sms_report")
            )
        ),
    }
    lines: list[str] = []
    try:
        for name, op in ops.items():
            with captured(engine) as statements:
                op()
            lines.append(f"## {name}\n")
            seen = set()
            for statement, params in statements:
                if "pg_" in statement or statement in seen:
                    continue
                seen.add(statement)
                lines.append(_IN_LIST.sub(r"IN (\1, …)", statement.strip()) + "\n")
                with engine.connect() as conn:
                    conn.exec_driver_sql(  # the op claimed them: free them for the EXPLAIN
                        "UPDATE sms_send SET claimed_by = NULL, claimed_until = NULL "
                        "WHERE status = 'pending' AND claimed_by IS NOT NULL"
                    )
                    plan = conn.exec_driver_sql(
                        "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, params
                    )
                    lines.extend("    " + row[0] + "\n" for row in plan)
                    conn.rollback()
                lines.append("\n")
    finally:
        engine.dispose()
    path.write_text("".join(lines))


# --- databases and the report ------------------------------------------------------------


def database_size(url: str) -> str:
    engine = create_db_engine(url)
    with engine.connect() as conn:
        size = conn.execute(sa.text("SELECT pg_size_pretty(pg_database_size(current_database()))"))
        text = str(size.scalar_one())
    engine.dispose()
    return text


def build(url: str, args: argparse.Namespace, full: bool) -> int:
    """Migrate, load, register the consumer run's sends; returns the pending sends loaded."""
    engine = create_db_engine(url)
    try:
        migrate.upgrade(engine)
        pending = load(engine, args.rows, args.days, args.pending_share, full)
        register_consumer_sends(SendStore(SqlStore(engine)), args.consumer_receipts)
    finally:
        engine.dispose()
    return pending


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace, load: str) -> None:
    empty, full = results["empty"], results["full"]

    def row(name: str, key: str, fmt: Callable[[dict[str, Any]], str], target: str) -> None:
        print(f"| {name} | {fmt(empty)} | {fmt(full)} | {target} |")

    def p50_99(key: str) -> Callable[[dict[str, Any]], str]:
        return lambda r: f"{pct(r[key], 0.5):.1f} / {pct(r[key], 0.99):.1f} ms"

    print(f"\n{args.rows:,} sms_send + {args.rows:,} sms_report over {args.days} days; "
          f"{full['pending']:,} pending; full database {full['size']}; {load}\n")  # fmt: skip
    print("| query | empty (pending sends only) | full | target |")
    print("|---|---:|---:|---|")
    name = f"claim {full['claimed']:,} due sends p50 / p99"
    row(name, "claim", p50_99("claim"), "p99 ≤ 50 ms")
    row("peek 5,000 p50 / p99", "peek", p50_99("peek"), "")
    row("settle a 16-receipt batch p50 / p99", "settle", p50_99("settle"), "")
    row("status summary (send counts) p50", "summary", lambda r: f"{pct(r['summary'], 0.5):.1f} ms",
        "≤ 50 ms")  # fmt: skip
    row("  exact count(*) it replaces p50", "exact", lambda r: f"{pct(r['exact'], 0.5):.0f} ms",
        "(before)")  # fmt: skip
    row("`GET /v1/stats` p50", "stats_http", lambda r: f"{pct(r['stats_http'], 0.5):.1f} ms",
        "≤ 50 ms")  # fmt: skip
    row("`receiptd status --json` (process)", "status_cli", lambda r: f"{r['status_cli']:.0f} ms",
        "≤ 1 s")  # fmt: skip
    row("prune one day", "prune", lambda r: r.get("prune", "n/a"), "≥ 50,000 rows/s")
    row("consumer end to end", "consumer", lambda r: f"{r['consumer']:,.0f} receipts/s",
        "full ≥ 90 % of empty")  # fmt: skip
    ratio = full["consumer"] / empty["consumer"]
    print(f"\nconsumer full/empty: {ratio:.0%}")


def main() -> None:
    load = harness.start()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="sms_send and sms_report rows")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument(
        "--pending-share", type=float, default=0.02,
        help="share of the last 72 hours' sends still pending (all due)",
    )  # fmt: skip
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--settle-reps", type=int, default=200)
    parser.add_argument("--consumer-receipts", type=int, default=20_000)
    parser.add_argument("--explain", type=Path, default=None, help="write EXPLAIN output here")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument("--claim-only", action="store_true", help="time the claim alone")
    parser.add_argument("--rounds", type=int, default=5, help="--claim-only: rounds of --reps")
    parser.add_argument(
        "--against", type=Path, default=None,
        help="--claim-only: also time the receiptd package in this directory",
    )  # fmt: skip
    parser.add_argument("--claim-worker", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--now", help=argparse.SUPPRESS)
    harness.add_consumer_wait(parser)
    args = parser.parse_args()
    if args.claim_worker:
        claim_worker(args.claim_worker, args.reps, args.now)
        return
    if args.claim_only:
        claim_only(args, load)
        return
    scratch = tempfile.TemporaryDirectory(prefix="receiptd-scale-")
    with scratch as tmp, harness.Scratch(keep=args.keep) as databases:
        results = run(args, databases, Path(tmp))
    report(results, args, load.line())


def run(args: argparse.Namespace, databases: harness.Scratch, tmp: Path) -> dict[str, Any]:
    urls: dict[str, str] = {}
    results: dict[str, dict[str, Any]] = {}
    emu = consumer_bench.Emu(settings=harness.consumer_overrides(args))
    try:
        for label, full in (("empty", False), ("full", True)):
            print(f"building {label} …", file=sys.stderr)
            urls[label] = databases.create(f"receiptd_scale_{label}")
            pending = build(urls[label], args, full)
            print(f"measuring {label} …", file=sys.stderr)
            consumer = consumer_rate(emu, urls[label], args.consumer_receipts, tmp)
            results[label] = measure(urls[label], args.reps, args.settle_reps)
            size = database_size(urls[label])
            results[label].update(pending=pending, consumer=consumer, size=size)
    finally:
        emu.close()
    rows, rate = prune_one_day(urls["full"], args.days)
    results["full"]["prune"] = f"{rows:,} rows, {rate:,.0f} rows/s"
    if args.explain:  # last: it runs each operation once more (the prune: day two)
        explain(urls["full"], args.days - 1, args.explain)
    return results


if __name__ == "__main__":
    main()
