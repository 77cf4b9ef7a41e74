"""Push ingestion benchmark: receipts POSTed to `receiptd run`'s push listener, into PostgreSQL.

    .venv/bin/python bench/push.py [--receipts 20000] [--concurrency 8] [--rate 1000]

One run, side by side per array size (1, 10, 100 receipts per request, as Alibaba merges them):

* push: the shipped daemon (`receiptd run`, push listener only, production settings but the
  address and token) in its own process; ``--concurrency`` client threads with keep-alive
  connections POST unique SmsReport arrays as fast as they are answered. receipts/s is end to
  end (every request answered 200 + code 0 after its commit); p99 is the answer time.
* store (the baseline): the same arrays written by ``SqlStore.write_batch`` from as many
  threads in this process, no HTTP: the floor the listener adds its cost to.
* paced: arrays of 10 at ``--rate`` receipts/s; p99 answer time (the target: ≤ 100 ms at
  1,000/s), with the target throughput ≥ 3,000 receipts/s.

Every run checks that each receipt was committed exactly once (row count).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import harness  # bench/harness.py
import sqlalchemy as sa

from receiptd import domain, ports
from receiptd.db import migrate
from receiptd.db.engine import create_db_engine
from receiptd.db.models import REPORT
from receiptd.db.store import SqlStore

TOKEN = "bench-push-token-0123456789"  # noqa: S105 - a local benchmark's token
SIZES = (1, 10, 100)


def element(i: int) -> dict[str, object]:
    """A delivered SmsReport element (the older field set); unique per ``i``."""
    times = {"send_time": "2026-11-25 10:00:00", "report_time": "2026-11-25 10:00:04"}
    ids = {"biz_id": f"{i:015d}^0", "out_id": f"o{i}", "phone_number": f"139{i % 10**8:08d}"}
    outcome = {"success": True, "err_code": "DELIVERED", "err_msg": "用户接收成功"}
    return {**ids, **times, **outcome, "sms_size": "1"}


class Counter:
    def __init__(self, start: int) -> None:
        self.next = start
        self.lock = threading.Lock()

    def take(self, n: int) -> int:
        with self.lock:
            first, self.next = self.next, self.next + n
            return first


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_daemon(url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIPTD_")}
    env.update(
        RECEIPTD_DATABASE_URL=url,
        RECEIPTD_PUSH_ADDR=f"127.0.0.1:{port}",
        RECEIPTD_PUSH_TOKEN=TOKEN,
        RECEIPTD_HTTP_ADDR=f"127.0.0.1:{free_port()}",
        RECEIPTD_COMPENSATOR_ENABLED="false",
        RECEIPTD_LOG_FORMAT="json",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "receiptd", "run"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    # Generous: on a loaded machine (the smoke runs start every script at once) importing
    # receiptd alone can take tens of seconds; a daemon that exited fails at once.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"receiptd did not listen:\n{log.read_text()[-2000:]}")


def run_clients(
    work: Callable[[int], float | None], threads: int, requests: int
) -> tuple[float, list[float]]:
    """``requests`` calls of ``work`` (returns the answer time) over ``threads``; seconds."""
    latencies: list[float] = []
    lock = threading.Lock()
    left = Counter(0)

    def loop() -> None:
        mine = []
        while left.take(1) < requests:
            took = work(0)
            if took is not None:
                mine.append(took)
        with lock:
            latencies.extend(mine)

    pool = [threading.Thread(target=loop) for _ in range(threads)]
    started = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return time.perf_counter() - started, latencies


class Poster:
    """One keep-alive connection per thread."""

    def __init__(self, port: int, size: int, ids: Counter) -> None:
        self.port, self.size, self.ids = port, size, ids
        self.local = threading.local()
        self.path = f"/push/{TOKEN}/aliyun/SmsReport"

    def __call__(self, _: int) -> float:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        first = self.ids.take(self.size)
        data = json.dumps([element(i) for i in range(first, first + self.size)]).encode()
        started = time.perf_counter()
        conn.request("POST", self.path, data, {"Content-Type": "application/json"})
        answer = conn.getresponse()
        body = answer.read()
        took = time.perf_counter() - started
        if answer.status != 200 or json.loads(body).get("code") != 0:
            raise RuntimeError(f"push answered {answer.status} {body[:200]!r}")
        return took


def store_writer(store: SqlStore, size: int, ids: Counter) -> Callable[[int], float]:
    def write(_: int) -> float:
        first = ids.take(size)
        reports = [
            ports.ReportRecord(str(i), domain.report_from_fields(element(i)), domain.Channel.PUSH)
            for i in range(first, first + size)
        ]
        started = time.perf_counter()
        store.write_batch(ports.Batch(reports=reports), datetime.now(UTC))
        return time.perf_counter() - started

    return write


def paced(port: int, ids: Counter, rate: int, seconds: float, threads: int) -> list[float]:
    """Arrays of 10 at ``rate`` receipts/s (requests released on a fixed schedule)."""
    poster = Poster(port, 10, ids)
    interval = 10 / rate
    total = int(seconds * rate / 10)
    start = time.perf_counter() + 0.2
    slot = Counter(0)
    latencies: list[float] = []
    lock = threading.Lock()

    def loop() -> None:
        while (n := slot.take(1)) < total:
            due = start + n * interval
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            took = poster(0)
            with lock:
                latencies.append(took + max(0.0, -pause))  # late start counts against us

    pool = [threading.Thread(target=loop) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return latencies


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def rows(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(REPORT)).scalar_one())


Result = tuple[int, float, float, float, float]


def measure(url: str, args: argparse.Namespace) -> tuple[list[Result], list[float], int, int]:
    """Every array size through the daemon and the store, then the paced run; and the rows
    stored against the receipts sent."""
    engine = create_db_engine(url)
    migrate.upgrade(engine)
    store = SqlStore(engine)
    ids = Counter(1)
    port = free_port()
    try:
        with tempfile.TemporaryDirectory(prefix="receiptd-bench-") as tmp:
            daemon = start_daemon(url, port, Path(tmp) / "receiptd.log")
            try:
                results = []
                for size in SIZES:
                    requests = max(1, args.receipts // size)
                    poster = Poster(port, size, ids)
                    push_s, push_lat = run_clients(poster, args.concurrency, requests)
                    writer = store_writer(store, size, ids)
                    store_s, store_lat = run_clients(writer, args.concurrency, requests)
                    n = requests * size
                    results.append((size, n / push_s, p99(push_lat), n / store_s, p99(store_lat)))
                paced_lat = paced(port, ids, args.rate, args.seconds, args.concurrency)
            finally:
                daemon.terminate()
                daemon.wait(30)
        return results, paced_lat, rows(engine), ids.next - 1
    finally:
        engine.dispose()


def main() -> None:
    load = harness.start()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--receipts", type=int, default=20_000, help="per array size")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with harness.scratch_postgres() as url:
        results, paced_lat, stored, expected = measure(url, args)

    print(f"{'array':>6}{'push rec/s':>12}{'push p99 ms':>13}{'store rec/s':>13}"
          f"{'store p99 ms':>14}")  # fmt: skip
    for size, push_rate, push_p99, store_rate, store_p99 in results:
        print(f"{size:>6}{push_rate:>12.0f}{push_p99:>13.1f}{store_rate:>13.0f}{store_p99:>14.1f}")
    print(
        f"paced: arrays of 10 at {args.rate:,} receipts/s for {args.seconds:g} s: p99 "
        f"{p99(paced_lat):.1f} ms over {len(paced_lat)} requests (target <= 100 ms)"
    )
    print(
        f"target: >= 3,000 receipts/s; concurrency {args.concurrency}; PostgreSQL; "
        f"{args.receipts:,} receipts per array size and path"
    )
    print(f"rows {stored:,} for {expected:,} receipts sent (each exactly once)")
    print(load.line())
    if stored != expected:
        raise SystemExit("row count mismatch")


if __name__ == "__main__":
    main()
