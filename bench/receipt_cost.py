"""Where a receipt's CPU goes once the SDK has received it, and the floor under the store.

    .venv/bin/python bench/receipt_cost.py [--receipts 20000] [--batch 16] [--rounds 3]

bench/consumer.py measures receiptd's own CPU per receipt inside ``receiptd consume``
(py-spy's share of the process, threads and the SDK included). This script takes that path
apart in one thread of its own process, on PostgreSQL scratch databases, with CPU read as
``time.process_time`` (user + system: the socket calls to the database count):

* **decode**: ``decode_batch`` of MNS bodies (base64, JSON, the fields), as the consumer's
  workers call it, ``--batch`` bodies a batch (MNS hands out at most 16);
* **store**: ``SqlStore.write_batch`` of the decoded batches, one transaction each, as the
  workers call it, on database *store*;
* **driver**: the very statements and parameters that ``write_batch`` sent, captured with
  SQLAlchemy's ``before_cursor_execute`` on database *capture* (not timed), replayed
  through one psycopg connection on database *driver*: psycopg's own ``BEGIN`` on the first
  statement, each statement executed and its rows fetched, ``COMMIT``. The database round
  trips and the driver, without SQLAlchemy or receiptd: the floor of any write path that
  keeps these statements and this transaction per batch.

``store - driver`` is what SQLAlchemy's Core and receiptd's store code cost around them.
With ``--sends`` every receipt's send is registered first (in all three databases), so each
batch also locks, settles and counts its sends, as in ``receiptd run``; without it no
receipt has a send, as in bench/consumer.py. The three databases get the same sends in the
same order, so their ids agree (the replayed UPDATEs name the capture database's ids); the run
ends by checking that the driver's database stored the same receipts and settled the same
sends as the store's, and exits 1 otherwise. Each round times decode, store and driver one
after the other on fresh receipts, so all three meet the same load; the table has each round
and the median.

A smoke run (tests/bench): ``--receipts 320 --rounds 1 --sends``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import harness  # bench/harness.py
import psycopg
import sqlalchemy as sa
from consumer import body  # bench/consumer.py's receipt bodies
from sqlalchemy.engine import make_url
from webhooks import register  # bench/webhooks.py: sends for those bodies

from receiptd import domain, ports
from receiptd.db import migrate
from receiptd.db.engine import create_db_engine
from receiptd.db.store import SqlStore
from receiptd.ingest.mns.batch import decode_batch

Statement = tuple[str, Any, bool]  # SQL as psycopg takes it, its parameters, executemany


def batches(start: int, receipts: int, size: int) -> list[list[ports.QueueMessage]]:
    """MNS messages of bench/consumer.py's bodies ``start .. start + receipts``."""
    return [
        [ports.QueueMessage(f"m{i}", f"h{i}", body(i)) for i in range(first, first + size)]
        for first in range(start, start + receipts, size)
    ]


def decoded(messages: Sequence[list[ports.QueueMessage]]) -> list[ports.Batch]:
    return [decode_batch(m, domain.MessageType.REPORT, "q", domain.CHINA_TZ) for m in messages]


def cpu_of(work: Callable[[], object]) -> float:
    """CPU seconds of this process (user + system) while ``work`` runs."""
    start = time.process_time()
    work()
    return time.process_time() - start


class Capture:
    """The statements each ``write_batch`` of a store sends, in order, one list a batch."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.current: list[Statement] = []
        sa.event.listen(store.engine, "before_cursor_execute", self._record)

    def _record(
        self, _conn: Any, _cursor: Any, statement: str, params: Any, _ctx: Any, many: bool
    ) -> None:
        self.current.append((statement, params, many))

    def statements(self, batch: ports.Batch, now: datetime) -> list[Statement]:
        self.current = []
        self.store.write_batch(batch, now)
        return self.current


def replay(conn: psycopg.Connection[Any], transactions: Sequence[Sequence[Statement]]) -> None:
    """Each transaction's statements through the driver alone, every row fetched."""
    for statements in transactions:
        with conn.cursor() as cursor:
            for sql, params, many in statements:
                if many:
                    cursor.executemany(sql, params)
                else:
                    cursor.execute(sql, params)
                if cursor.description is not None:
                    cursor.fetchall()
        conn.commit()


def driver_dsn(url: str) -> str:
    """The SQLAlchemy URL as the libpq URI psycopg connects with."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


WARM_BATCHES = 20


def measure(
    stores: dict[str, SqlStore],
    capture: Capture,
    conn: psycopg.Connection[Any],
    first: int,
    count: int,
    args: argparse.Namespace,
) -> tuple[float, float, float, float]:
    """One round on fresh receipts: µs per receipt of decode, store and driver, and the
    statements write_batch sent per batch."""
    if args.sends:
        for store in stores.values():
            register(store, first, count)
    messages = batches(first, count, args.batch)
    work = decoded(messages)
    now = datetime.now(UTC)
    transactions = [capture.statements(b, now) for b in work]
    decode_s = cpu_of(lambda: decoded(messages))
    store_s = cpu_of(lambda: [stores["store"].write_batch(b, now) for b in work])
    driver_s = cpu_of(lambda: replay(conn, transactions))
    per = 1e6 / count
    statements = sum(len(t) for t in transactions) / len(transactions)
    return decode_s * per, store_s * per, driver_s * per, statements


def check_same_outcome(store: sa.Engine, driver: sa.Engine) -> None:
    """The replay did the store's work: the same receipts stored, the same sends settled."""
    query = sa.text(
        "SELECT (SELECT count(*) FROM sms_report), "
        "(SELECT count(*) FROM sms_send WHERE status <> 'pending')"
    )
    seen = []
    for engine in (store, driver):
        with engine.connect() as c:
            seen.append(tuple(c.execute(query).one()))
    if seen[0] != seen[1]:
        raise SystemExit(f"the replay differs from the store: {seen[0]} against {seen[1]}")


def main() -> None:
    load = harness.start()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--receipts", type=int, default=20_000, help="per round")
    parser.add_argument("--batch", type=int, default=16, help="receipts per batch (MNS: <= 16)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sends", action="store_true", help="each receipt settles a send")
    args = parser.parse_args()
    if args.receipts % args.batch:
        parser.error("--receipts must be a multiple of --batch")

    rows: list[tuple[float, float, float, float]] = []  # decode, store, driver µs; statements
    span = max(args.receipts, WARM_BATCHES * args.batch)  # receipt numbers a round may use
    with harness.Scratch() as scratch:
        urls = {name: scratch.create("receiptd_cost") for name in ("store", "capture", "driver")}
        engines = {name: create_db_engine(url) for name, url in urls.items()}
        try:
            for engine in engines.values():
                migrate.upgrade(engine)
            stores = {name: SqlStore(engine) for name, engine in engines.items()}
            capture = Capture(stores["capture"])
            with psycopg.connect(driver_dsn(urls["driver"])) as conn:
                for n in range(args.rounds + 1):  # round 0 warms caches and connections
                    count = args.receipts if n else WARM_BATCHES * args.batch
                    row = measure(stores, capture, conn, n * span, count, args)
                    if n:
                        rows.append(row)
            check_same_outcome(engines["store"], engines["driver"])
        finally:
            for engine in engines.values():
                engine.dispose()
    print(table(rows, args))
    print(load.line())


def table(rows: list[tuple[float, float, float, float]], args: argparse.Namespace) -> str:
    sends = "each receipt settles a send" if args.sends else "no receipt has a send"
    head = "round      decode µs  store µs  driver µs  store-driver µs  statements/batch"
    lines = [f"receipt CPU, one thread, PostgreSQL, batches of {args.batch} ({sends})", head]
    for n, (d, s, v, c) in enumerate(rows, 1):
        lines.append(f"{n:<10} {d:9.1f} {s:9.1f} {v:10.1f} {s - v:16.1f} {c:17.1f}")
    if len(rows) > 1:
        d, s, v = (statistics.median(r[i] for r in rows) for i in range(3))
        lines.append(f"{'median':<10} {d:9.1f} {s:9.1f} {v:10.1f} {s - v:16.1f}")
    lines.append(
        "µs: CPU of this process (user + system) per receipt; statements: what write_batch "
        "sent per batch (psycopg adds BEGIN and COMMIT to each)"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
