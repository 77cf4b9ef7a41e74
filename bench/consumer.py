"""Consumer benchmark: receiptd versus the provider's demo loop, on SQLite and PostgreSQL.

    .venv/bin/python bench/consumer.py [--receipts 10000] [--demo-receipts 1000]

The emulator runs in a child process so the peak RSS measured here is receiptd's own.
Figures: end-to-end receipts/s (queued → committed and deleted), the demo loop (receive one,
decode, insert + commit, delete one) as the baseline, p99 queued→committed latency at a steady
1,000 receipts/s, and peak RSS. Results go to stdout as a table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from mns.account import Account
from mns.mns_exception import MNSServerException
from sqlalchemy.engine import make_url

from receiptd import domain, ports
from receiptd.consumer import Consumer
from receiptd.db import migrate
from receiptd.db.engine import create_db_engine
from receiptd.db.models import REPORT
from receiptd.db.store import SqlStore
from receiptd.health import Health
from receiptd.providers.aliyun import mns
from receiptd.testing.queues import emulator_settings

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def body(i: int) -> str:
    return domain.encode_body(
        {"biz_id": f"{i}^0", "phone_number": f"138{i:08d}", "success": True,
         "send_time": "2026-11-25 16:00:00", "report_time": "2026-11-25 16:00:03",
         "err_code": "DELIVERED", "err_msg": "用户接收成功", "sms_size": "1"}
    )  # fmt: skip


# --- the emulator, in a child process ------------------------------------------------------


def _emulator_child(conn: Any) -> None:
    from receiptd.emulator.emulator import Emulator

    with Emulator(profile="default", token_lifetime=3600.0) as emu:
        conn.send(emu.info.as_dict())
        while (cmd := conn.recv()) is not None:
            op, args = cmd
            if op == "fill":
                start, count = args
                for i in range(start, start + count):
                    emu.enqueue("report", body(i))
                conn.send(True)
            elif op == "steady":
                conn.send(_steady(emu, *args))
            elif op == "depth":
                conn.send(sum(emu.queue_depth("report").values()))


def _steady(emu: Any, start: int, rate: int, seconds: float) -> dict[str, float]:
    """Enqueue ``rate`` receipts/s in 10 ms ticks; returns message id → enqueue wall time."""
    sent: dict[str, float] = {}
    per_tick = max(1, rate // 100)
    began = time.monotonic()
    i = start
    while time.monotonic() - began < seconds:
        tick = began + (i - start) / rate
        if (pause := tick - time.monotonic()) > 0:
            time.sleep(pause)
        for _ in range(per_tick):
            sent[emu.enqueue("report", body(i))] = time.time()
            i += 1
    return sent


class Emu:
    def __init__(self) -> None:
        self.conn, child = mp.Pipe()
        self.proc = mp.get_context("spawn").Process(target=_emulator_child, args=(child,))
        self.proc.start()
        self.info = argparse.Namespace(**self.conn.recv())

    def call(self, op: str, *args: Any) -> Any:
        self.conn.send((op, args))
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send(None)
        self.proc.join(10)


# --- receiptd and the demo loop -------------------------------------------------------------


class TimingSink(SqlStore):
    """Records the commit time of every message id (for queued→committed latency)."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self.committed: dict[str, float] = {}
        self._lock = threading.Lock()

    def write_batch(self, batch: ports.Batch, now: datetime) -> ports.BatchResult:
        result = super().write_batch(batch, now)
        done = time.time()
        with self._lock:
            for r in batch.reports:
                self.committed[r.message_id] = done
        return result


def consumer(emu: Emu, url: str, sink: ports.ReceiptSink, threads: int = 4) -> Consumer:
    settings = emulator_settings(emu.info, url)
    kind = domain.MessageType.REPORT
    return Consumer(
        kind, mns.queue_factory(settings, kind), sink, Health(),
        threads=threads, batch_size=16, wait_seconds=1, tz=settings.timezone,
    )  # fmt: skip


def receiptd_rate(emu: Emu, engine: sa.Engine, url: str, n: int) -> float:
    emu.call("fill", 0, n)
    began = time.monotonic()
    stats = consumer(emu, url, SqlStore(engine)).run_until_idle()
    elapsed = time.monotonic() - began - 1.0  # minus the final empty 1 s long poll
    assert stats.stored == n and emu.call("depth") == 0, stats
    return n / elapsed


def demo_rate(emu: Emu, engine: sa.Engine, n: int) -> float:
    """The official demo's shape: one message per round trip, one commit, one delete."""
    emu.call("fill", 10_000_000, n)
    # The demo reads with a token; the owner key keeps this loop free of token logic.
    account = Account(
        emu.info.mns_endpoint, emu.info.mns_owner_access_key_id,
        emu.info.mns_owner_access_key_secret,
    )  # fmt: skip
    queue = account.get_queue(emu.info.report_queue)
    began, done = time.monotonic(), 0
    while done < n:
        try:
            msg = queue.receive_message(wait_seconds=3)
        except MNSServerException as exc:
            if exc.type == "MessageNotExist":
                break
            raise
        data = json.loads(msg.message_body)
        with engine.begin() as conn:
            conn.execute(sa.insert(REPORT).values(
                mns_message_id=msg.message_id, biz_id=data["biz_id"],
                phone_number=data["phone_number"], success=data["success"],
                send_time=domain.parse_provider_time(data["send_time"]),
                received_at=datetime.now(UTC),
            ))  # fmt: skip
        queue.delete_message(msg.receipt_handle)
        done += 1
    return done / (time.monotonic() - began)


def p99_latency(emu: Emu, engine: sa.Engine, url: str, rate: int, seconds: float) -> float:
    sink = TimingSink(engine)
    c = consumer(emu, url, sink)
    c.start()
    sent = emu.call("steady", 20_000_000, rate, seconds)
    while emu.call("depth") and c.alive:
        time.sleep(0.2)
    c.stop()
    c.join(10)
    latencies = sorted(sink.committed[m] - t for m, t in sent.items() if m in sink.committed)
    assert len(latencies) == len(sent), (len(latencies), len(sent))
    return latencies[int(len(latencies) * 0.99) - 1]


# --- databases ----------------------------------------------------------------------------


def scratch_databases(tmp: str) -> dict[str, str]:
    name = f"receiptd_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    pg = make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    return {"sqlite": f"sqlite:///{tmp}/bench.db", "postgresql": pg}


def drop_postgres(url: str) -> None:
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {make_url(url).database} WITH (FORCE)"))
    admin.dispose()


def run_backend(emu: Emu, url: str, args: argparse.Namespace) -> dict[str, float]:
    engine = create_db_engine(url)
    migrate.upgrade(engine)
    try:
        ours = receiptd_rate(emu, engine, url, args.receipts)
        demo = demo_rate(emu, engine, args.demo_receipts)
        p99 = p99_latency(emu, engine, url, args.rate, args.seconds)
    finally:
        engine.dispose()
    return {"receiptd": ours, "demo": demo, "ratio": ours / demo, "p99": p99}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--receipts", type=int, default=10_000)
    parser.add_argument("--demo-receipts", type=int, default=1_000)
    parser.add_argument("--rate", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--tmp", default="/tmp")
    args = parser.parse_args()
    urls = scratch_databases(args.tmp)
    emu = Emu()
    results = {}
    try:
        for backend, url in urls.items():
            results[backend] = run_backend(emu, url, args)
    finally:
        emu.close()
        drop_postgres(urls["postgresql"])
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'backend':<11}{'receiptd/s':>12}{'demo/s':>10}{'ratio':>8}{'p99 (s)':>10}")
    for backend, r in results.items():
        print(
            f"{backend:<11}{r['receiptd']:>12.0f}{r['demo']:>10.0f}"
            f"{r['ratio']:>7.1f}x{r['p99']:>10.3f}"
        )
    print(f"peak RSS of the receiptd process: {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
