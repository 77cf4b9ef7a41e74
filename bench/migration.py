"""What a migration costs on a month of traffic: time per step, and how long reads and writes
of the tables wait for it (PostgreSQL). 0005 (accounts) by default, or 0006 (international
sends: ``matched_by`` in the unique keys) with ``--to 0006``, or 0007 (the send counts: one
count of ``sms_send``) with ``--to 0007``.

    .venv/bin/python bench/migration.py                  # 0005, 10 M sends + 10 M receipts
    .venv/bin/python bench/migration.py --to 0006 --rows 1000000

A scratch database on the local PostgreSQL is migrated to the revision before (0004 for 0005,
0005 for 0006) and bulk-loaded as bench/scale.py loads its *full* database (the same rows,
COPY, indexes rebuilt, VACUUM ANALYZE). Then ``receiptd db upgrade`` runs it while two probes, each
on its own connection, read one ``sms_send`` row and insert-then-delete one ``sms_report`` row
in a loop (each statement its own transaction): the longest a probe statement waited is how
long an application reading or a consumer writing would have stalled. Every DDL statement of
the migration is timed (SQLAlchemy cursor events on the migrating engine).

The scratch database is dropped at the end, also when the run fails or is stopped.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from receiptd.db import migrate
from receiptd.db.engine import create_db_engine

sys.path.insert(0, str(Path(__file__).parent))
import harness  # bench/harness.py
import scale  # bench/scale.py: the month of traffic

# a revision measured → the one it upgrades from
STEPS = {"0005": "0004", "0006": "0005", "0007": "0006"}


class Probe(threading.Thread):
    """One statement in a loop on its own connection; the longest it took, and how many ran."""

    def __init__(self, url: str, name: str, statements: list[str]) -> None:
        super().__init__(daemon=True, name=name)
        self.engine = create_db_engine(url)
        self.statements = statements
        self.stop = threading.Event()
        self.longest = 0.0
        self.runs = 0

    def run(self) -> None:
        with self.engine.connect() as conn:
            while not self.stop.is_set():
                started = time.monotonic()
                for statement in self.statements:
                    conn.execute(sa.text(statement))
                conn.commit()
                self.longest = max(self.longest, time.monotonic() - started)
                self.runs += 1
                self.stop.wait(0.01)

    def finish(self) -> None:
        self.stop.set()
        self.join(3600)
        self.engine.dispose()


PROBES = {
    "read one sms_send row": ["SELECT status FROM sms_send WHERE id = 1"],
    "write one sms_report row": [
        "INSERT INTO sms_report (biz_id, phone_number, success, send_time, received_at) "
        "VALUES ('probe^0', '13900000000', true, now(), now())",
        "DELETE FROM sms_report WHERE biz_id = 'probe^0'",
    ],
}


def timed_statements(engine: sa.Engine) -> list[tuple[str, float]]:
    """Every statement the engine runs from now on, with its duration."""
    timings: list[tuple[str, float]] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        conn.info.setdefault("started", []).append(time.monotonic())

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        started = conn.info["started"].pop()
        timings.append((" ".join(statement.split()), time.monotonic() - started))

    return timings


def main() -> None:
    load = harness.start()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="sms_send and sms_report rows")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--pending-share", type=float, default=0.02)
    parser.add_argument("--to", choices=sorted(STEPS), default="0005", help="the revision")
    args = parser.parse_args()
    before, after = STEPS[args.to], args.to
    with harness.Scratch() as databases:
        url = databases.create("receiptd_migration")
        engine = create_db_engine(url)
        try:
            migrate.upgrade(engine, before)
            print(f"loading {args.rows:,} + {args.rows:,} rows …", file=sys.stderr)
            scale.load(engine, args.rows, args.days, args.pending_share, full=True)
            size = scale.database_size(url)
        finally:
            engine.dispose()
        probes = [Probe(url, name, statements) for name, statements in PROBES.items()]
        for probe in probes:
            probe.start()
        time.sleep(1.0)  # the probes' own round trip, before the migration
        quiet = {p.name: p.longest for p in probes}
        engine = create_db_engine(url)
        timings = timed_statements(engine)
        started = time.monotonic()
        try:
            migrate.upgrade(engine, after)
        finally:
            engine.dispose()
        total = time.monotonic() - started
        time.sleep(0.5)
        for probe in probes:
            probe.finish()
    report(args, size, total, timings, probes, quiet, load.line())


def report(
    args: argparse.Namespace,
    size: str,
    total: float,
    timings: list[tuple[str, float]],
    probes: list[Probe],
    quiet: dict[str, float],
    load: str,
) -> None:
    print(f"migration {STEPS[args.to]} -> {args.to} on {args.rows:,} sms_send + "
          f"{args.rows:,} sms_report rows ({size}): {total:.1f} s in all")  # fmt: skip
    print("| statement | s |")
    print("|---|---:|")
    for statement, seconds in timings:
        if statement.split(" ", 1)[0] in ("ALTER", "CREATE", "DROP"):
            print(f"| `{statement[:110]}` | {seconds:.2f} |")
    print("| probe (own connection, one statement a transaction) | longest wait s | quiet s |")
    print("|---|---:|---:|")
    for probe in probes:
        print(f"| {probe.name} | {probe.longest:.2f} | {quiet[probe.name]:.3f} |")
    print(load)


if __name__ == "__main__":
    main()
