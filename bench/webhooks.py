"""Webhook benchmark on PostgreSQL: events delivered per second, and the consumer with
webhooks on versus off, side by side in one run.

    .venv/bin/python bench/webhooks.py [--events 20000] [--receipts 10000] [--latency-ms 3]
        [--consumer-wait SECONDS]

* Delivery: ``--events`` events are written to the outbox (sends registered, then settled by
  receipts through the store), then the production dispatcher
  (``receiptd.webhooks.dispatcher``, default settings: concurrency 4, batches of 64) delivers
  them to a local receiver in its own process (``receiptd.testing.receiver``: a threaded
  ``http.server`` that verifies every signature with ``standardwebhooks``). Figure: events /
  seconds from start to the last delivery recorded; every event must arrive, signature
  verified.
* Consumer: ``receiptd consume --until-idle`` (bench/consumer.py's run: production settings,
  end to end from first receive to empty queue) on ``--receipts`` receipts whose sends are
  registered, so every receipt settles a send. Off: no endpoint. On: an endpoint configured,
  so every settle also writes its event and delivery rows in the same transaction, while the
  dispatcher delivers them concurrently (in this process) to the receiver.
* ``receiptd run`` (consumers and dispatcher in one process) the same way, webhooks off and on,
  and on with the roles split: ``--roles consumer`` timed while ``--roles webhooks`` delivers
  in its own process (docs/operations.md "Roles"); then all of it again with ``--latency-ms``
  added to every MNS request (0: skip that part).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import multiprocessing as mp
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness  # bench/harness.py
import sqlalchemy as sa
from consumer import Emu, consumer_env, cpu_seconds, receiptd_run  # bench/consumer.py
from pydantic import SecretStr

from receiptd import config, domain, ports, wiring
from receiptd.daemon.health import Health
from receiptd.db import migrate
from receiptd.db.deliveries import SqlEventOutbox
from receiptd.db.engine import create_db_engine
from receiptd.db.models import DELIVERY
from receiptd.db.sends import SendStore
from receiptd.db.store import SqlStore
from receiptd.webhooks import dispatcher as webhooks
from receiptd.wiring import daemon

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _receiver_child(conn: Any, secret: str) -> None:
    from receiptd.testing.receiver import Receiver

    with Receiver(secret) as receiver:
        conn.send(receiver.url)
        while conn.recv() is not None:
            conn.send((receiver.unique(), receiver.rejected, receiver.duplicates()))


class ReceiverProcess:
    def __init__(self) -> None:
        self.conn, child = mp.Pipe()
        self.proc = mp.get_context("spawn").Process(target=_receiver_child, args=(child, SECRET))
        self.proc.start()
        self.url: str = self.conn.recv()

    def counts(self) -> tuple[int, int, int]:
        self.conn.send(True)
        result: tuple[int, int, int] = self.conn.recv()
        return result

    def close(self) -> None:
        self.conn.send(None)
        self.proc.join(10)


def endpoint(url: str, name: str) -> config.WebhookEndpoint:
    return config.WebhookEndpoint(name=name, url=url, secret=SecretStr(SECRET))


def register(store: SqlStore, start: int, n: int) -> None:
    """Sends for bench/consumer.py's receipt bodies ``start .. start + n``."""
    now = datetime.now(UTC)
    sends = SendStore(store)
    for first in range(start, start + n, 1000):
        batch = [
            ports.NewSend(domain.Provider.ALIYUN, f"{i}^0", f"138{i:08d}", now)
            for i in range(first, min(start + n, first + 1000))
        ]
        sends.register(batch, now)


def fill_outbox(store: SqlStore, start: int, n: int) -> None:
    """``n`` events: sends registered, then settled by receipts, 16 per transaction."""
    register(store, start, n)
    now = datetime.now(UTC)
    for first in range(start, start + n, 16):
        reports = [
            ports.ReportRecord(
                f"m{i}", domain.SmsReport(f"{i}^0", f"138{i:08d}", True, now, err_code="DELIVERED")
            )
            for i in range(first, min(start + n, first + 16))
        ]
        store.write_batch(ports.Batch(reports=reports), now)


def pending(engine: sa.Engine, name: str) -> int:
    with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(DELIVERY)
        query = query.where(DELIVERY.c.endpoint == name, DELIVERY.c.status == "pending")
        return int(conn.execute(query).scalar_one())


def dispatcher(store: SqlStore, hook: config.WebhookEndpoint) -> webhooks.Dispatcher:
    policy = daemon.webhook_policy(config.Settings())  # the production defaults
    outbox = SqlEventOutbox(store)
    worker = webhooks.EndpointWorker(hook, outbox, policy, Health())
    return webhooks.Dispatcher([worker], outbox, Health(), policy)


def delivery_rate(url: str, receiver: ReceiverProcess, n: int) -> tuple[float, float]:
    """Events/s from dispatcher start to the last delivery recorded; CPU ms per 1k events."""
    hook = endpoint(receiver.url, "bench")
    engine = create_db_engine(url)
    routes = wiring.event_outbox(config.Settings(webhook_endpoints=(hook,)))
    store = SqlStore(engine, routes)
    try:
        fill_outbox(store, 60_000_000, n)
        assert pending(engine, "bench") == n
        before = receiver.counts()[0]
        d = dispatcher(store, hook)
        cpu0, t0 = time.process_time(), time.monotonic()
        d.start()
        while pending(engine, "bench"):
            time.sleep(0.05)
        elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
        d.stop()
        d.join(10)
        unique, rejected, _ = receiver.counts()
        assert unique - before == n and rejected == 0, (unique, rejected)
        return n / elapsed, cpu / n * 1e6  # ms per 1,000 events
    finally:
        engine.dispose()


def consumer_rates(
    emu: Emu, url: str, receiver: ReceiverProcess, n: int, tmp: Path, first: int
) -> tuple[float, float, float, int]:
    """receiptd consume receipts/s: webhooks off; on with the dispatcher idle (the outbox
    writes alone); on with the dispatcher delivering meanwhile on this machine."""
    engine = create_db_engine(url)
    store = SqlStore(engine)
    hook = endpoint(receiver.url, "consume")
    env = {
        "RECEIPTD_WEBHOOK_ENDPOINTS": f'[{{"name": "consume", "url": "{receiver.url}", '
        f'"secret": "{SECRET}"}}]'
    }
    try:
        register(store, first, 3 * n)
        off = receiptd_run(emu, engine, url, n, tmp / f"off-{first}.log", start=first)
        writes = receiptd_run(emu, engine, url, n, tmp / f"w-{first}.log", first + n, **env)
        d = dispatcher(store, hook)
        d.start()
        on = receiptd_run(emu, engine, url, n, tmp / f"on-{first}.log", first + 2 * n, **env)
        deadline = time.monotonic() + 60
        while pending(engine, "consume") and time.monotonic() < deadline:
            time.sleep(0.05)
        left = pending(engine, "consume")
        d.stop()
        d.join(10)
        return off.rate, writes.rate, on.rate, left
    finally:
        engine.dispose()


def run_process(
    emu: Emu, url: str, log: Path, roles: str | None = None, **extra: str
) -> subprocess.Popen[bytes]:
    """``receiptd run`` (no compensator; ``roles``: ``--roles``) with its output to ``log``."""
    env = consumer_env(emu, url, RECEIPTD_COMPENSATOR_ENABLED="false", **extra)
    env["RECEIPTD_HTTP_ADDR"] = "127.0.0.1:0"
    # libpq's application_name: WaitSampler tells the processes' sessions apart by it.
    env["PGAPPNAME"] = f"receiptd {roles or 'run'}"
    command = [sys.executable, "-m", "receiptd", "run", *(["--roles", roles] if roles else [])]
    with log.open("w") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=out)


def postgres_pids() -> list[int]:
    """The local PostgreSQL server's processes (its backends do the database's work)."""
    pgrep = ["pgrep", "-u", "postgres"]
    out = subprocess.run(pgrep, capture_output=True, text=True, check=False).stdout
    return [int(pid) for pid in out.split()]


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # ended meanwhile
            out[pid] = cpu_seconds(pid)
    return out


def machine_busy() -> float:
    """CPU seconds every core spent outside idle and I/O wait since boot (/proc/stat)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(v) for v in Path("/proc/stat").read_text().split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class WaitSampler:
    """What the database sessions of each process do, sampled every 5 ms from
    ``pg_stat_activity`` while the block runs: on CPU (active, no wait), waiting (the wait
    event), idle in a transaction (the client is working inside one) or idle (between
    transactions). A share per process (``application_name``) and state."""

    def __init__(self, url: str) -> None:
        self.engine = create_db_engine(url)
        self.samples: dict[tuple[str, str], int] = {}
        self.statements: dict[tuple[str, str], int] = {}  # what the running ones run
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="wait-sampler", daemon=True)

    def __enter__(self) -> WaitSampler:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(10)
        self.engine.dispose()

    def _run(self) -> None:
        query = sa.text(
            "SELECT application_name, state, wait_event_type, wait_event, left(query, 48)"
            " FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND application_name LIKE 'receiptd %'"
        )
        with self.engine.connect() as conn:
            while not self.stop.wait(0.005):
                for app, state, kind, event, statement in conn.execute(query):
                    what = _session_state(state, kind, event)
                    self.samples[(app, what)] = self.samples.get((app, what), 0) + 1
                    if what == "on CPU":
                        key = (app, " ".join(statement.split()))
                        self.statements[key] = self.statements.get(key, 0) + 1
                conn.rollback()

    def shares(self) -> dict[str, list[tuple[str, float]]]:
        """Per process: its states by share of its samples, largest first; then the statements
        its sessions were running, by share of those samples (``running: <statement>``)."""
        out: dict[str, list[tuple[str, float]]] = {}
        for samples, prefix in ((self.samples, ""), (self.statements, "running: ")):
            for (app, what), count in sorted(samples.items(), key=lambda kv: -kv[1]):
                total = sum(n for (a, _), n in samples.items() if a == app)
                out.setdefault(app, []).append((prefix + what, count / total))
        return out


def _session_state(state: str | None, kind: str | None, event: str | None) -> str:
    if state == "active":
        return "on CPU" if kind is None else f"waiting {kind}:{event}"
    return str(state)


def daemon_rate(
    emu: Emu,
    url: str,
    n: int,
    start: int,
    log: Path,
    roles: str | None = None,
    watch: dict[str, Callable[[], list[int]]] | None = None,
    waits: WaitSampler | None = None,
    **extra: str,
) -> tuple[float, dict[str, float]]:
    """``receiptd run`` (consumers and, with an endpoint, the dispatcher in one process; no
    compensator) on ``n`` queued receipts: first receive to empty queue, as receiptd_run. With
    it, CPU ms per 1,000 receipts in that window of this process ("consumer") and of each
    group of ``watch`` (what else shares the cores)."""
    emu.fill(start, n)
    proc = run_process(emu, url, log, roles, **extra)
    try:
        while emu.call("depth")["visible"] == n:
            assert proc.poll() is None, log.read_text()[-2000:]
            time.sleep(0.002)
        # Each group's processes at the window's start and end: a process that started
        # meanwhile (a PostgreSQL backend for a connection the pool opened) counts whole.
        groups = {"consumer": lambda: [proc.pid], **(watch or {})}
        t0, busy0 = time.monotonic(), machine_busy()
        cpu0 = {k: cpu_by_pid(pids()) for k, pids in groups.items()}
        with waits or contextlib.nullcontext():
            while emu.depth():
                assert proc.poll() is None, log.read_text()[-2000:]
                time.sleep(0.002)
        t1, busy1 = time.monotonic(), machine_busy()
        cpu1 = {k: cpu_by_pid(pids()) for k, pids in groups.items()}
        spent = {
            k: sum(seconds - cpu0[k].get(pid, 0.0) for pid, seconds in cpu1[k].items())
            for k in groups
        }
        spent["machine"] = busy1 - busy0
        return n / (t1 - t0), {k: seconds * 1e6 / n for k, seconds in spent.items()}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def daemon_rates(
    emu: Emu, url: str, receiver: ReceiverProcess, n: int, tmp: Path, first: int
) -> tuple[float, float, float, int, dict[str, float], dict[str, list[tuple[str, float]]]]:
    """receiptd run receipts/s with webhooks off; on (its own dispatcher delivering); on with
    the webhooks role in a process of its own (``--roles consumer`` + ``--roles webhooks``),
    and where the two cores went in that split run (CPU ms per 1,000 receipts)."""
    engine = create_db_engine(url)
    store = SqlStore(engine)
    env = {
        "RECEIPTD_WEBHOOK_ENDPOINTS": f'[{{"name": "daemon", "url": "{receiver.url}", '
        f'"secret": "{SECRET}"}}]'
    }
    try:
        register(store, first, 3 * n)
        off, _ = daemon_rate(emu, url, n, first, tmp / f"run-off-{first}.log")
        on, _ = daemon_rate(emu, url, n, first + n, tmp / f"run-on-{first}.log", **env)
        hooks = run_process(emu, url, tmp / f"run-webhooks-{first}.log", "webhooks", **env)
        try:
            log = tmp / f"run-split-{first}.log"
            watch: dict[str, Callable[[], list[int]]] = {
                "dispatcher": lambda: [hooks.pid],
                "receiver": lambda: [receiver.proc.pid or 0],
                "emulator": lambda: [emu.proc.pid or 0],
                "postgres": postgres_pids,
            }
            waits = WaitSampler(url)
            split, cpu = daemon_rate(
                emu, url, n, first + 2 * n, log, "consumer", watch, waits, **env
            )
            deadline = time.monotonic() + 60
            while pending(engine, "daemon") and time.monotonic() < deadline:
                assert hooks.poll() is None, "the webhooks process died"
                time.sleep(0.05)
        finally:
            hooks.send_signal(signal.SIGTERM)
            hooks.wait(30)
        return off, on, split, pending(engine, "daemon"), cpu, waits.shares()
    finally:
        engine.dispose()


Rates = tuple[float, float, float, int]
DaemonRates = tuple[float, float, float, int]


def measure(
    emu: Emu, url: str, receiver: ReceiverProcess, args: argparse.Namespace, tmp: Path
) -> tuple[tuple[float, float], list[tuple[str, Rates]], list[tuple[str, DaemonRates]]]:
    """Delivery, then consumer and daemon rates on loopback and (``--latency-ms``) with RTT."""
    delivery = delivery_rate(url, receiver, args.events)
    consumers = [
        ("loopback MNS", consumer_rates(emu, url, receiver, args.receipts, tmp, 70_000_000))
    ]
    daemons = [("loopback MNS", daemon_rates(emu, url, receiver, args.receipts, tmp, 75_000_000))]
    if args.latency_ms > 0:
        label = f"+{args.latency_ms:g} ms MNS round trip"
        emu.call("latency", args.latency_ms / 1000)
        consumers.append(
            (label, consumer_rates(emu, url, receiver, args.receipts, tmp, 80_000_000))
        )
        daemons.append((label, daemon_rates(emu, url, receiver, args.receipts, tmp, 85_000_000)))
    return delivery, consumers, daemons


def report(
    delivery: tuple[float, float],
    consumers: list[tuple[str, Rates]],
    daemons: list[tuple[str, DaemonRates]],
) -> None:
    rate, cpu = delivery
    print(f"{'what':<62}{'figure':>12}{'target':>11}")
    print(f"{'events delivered to a local receiver (PostgreSQL)':<62}{rate:>10.0f}/s  ≥ 1,000/s")
    print(f"{'  bench process CPU (dispatcher) per 1,000 events':<62}{cpu:>9.0f} ms")
    for label, (off, writes, on, left) in consumers:
        print(f"consumer receipts/s ({label}):")
        print(f"{'  webhooks off':<62}{off:>10.0f}/s")
        idle = "  on, dispatcher idle (outbox writes only)"
        print(f"{idle:<62}{writes:>10.0f}/s{writes / off:>7.0%}")
        print(f"{'  on, dispatcher + receiver delivering on the same 2 cores':<62}{on:>10.0f}/s"
              f"{on / off:>7.0%}  ≥ 90 %")  # fmt: skip
        print(f"  deliveries still pending 60 s after the last run: {left}")
    for label, (off, on, split, left, cpu, waits) in daemons:
        print(f"receiptd run receipts/s ({label}):")
        print(f"{'  webhooks off':<62}{off:>10.0f}/s")
        print(f"{'  webhooks on, dispatcher in the same process':<62}{on:>10.0f}/s"
              f"{on / off:>7.0%}")  # fmt: skip
        print(f"{'  webhooks on, --roles consumer + --roles webhooks':<62}{split:>10.0f}/s"
              f"{split / off:>7.0%}  ≥ 90 %")  # fmt: skip
        print(f"  deliveries pending 60 s after the split run: {left}")
        machine = cpu.pop("machine")
        spent = ", ".join(f"{who} {ms:.0f}" for who, ms in cpu.items())
        cores = os.cpu_count() or 1
        print(f"  CPU ms per 1,000 receipts in the split run: {spent}; the machine's busy "
              f"{machine:.0f} of the {cores} cores' {cores * 1e6 / split:.0f}")  # fmt: skip
        for app, states in waits.items():
            top = ", ".join(
                f"{what} {share:.0%}" for what, share in states if "running: " not in what
            )
            print(f"  database sessions of {app}: {top}")
            for what, share in [x for x in states if x[0].startswith("running: ")][:4]:
                print(f"    {share:>4.0%} {what}")


def main() -> None:
    load = harness.start()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--receipts", type=int, default=10_000)
    parser.add_argument(
        "--latency-ms", type=float, default=3.0, help="MNS round trip, 2nd run (0: skip it)"
    )
    parser.add_argument(
        "--synchronous-commit", choices=("on", "off"), default="on",
        help="the scratch database's synchronous_commit (off: a diagnosis of what the commit "
        "flushes cost, never a production setting)",
    )  # fmt: skip
    harness.add_consumer_wait(parser)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="receiptd-bench-") as tmp,
        harness.scratch_postgres() as url,
    ):
        engine = create_db_engine(url)
        with engine.connect() as conn:  # for every session opened from now on
            database = conn.execute(sa.text("SELECT current_database()")).scalar_one()
            conn.execute(sa.text(f'ALTER DATABASE "{database}" SET synchronous_commit TO '
                                 f"{args.synchronous_commit}"))  # fmt: skip
            conn.commit()
        engine.dispose()
        engine = create_db_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        receiver = ReceiverProcess()
        emu = Emu(settings=harness.consumer_overrides(args))
        try:
            results = measure(emu, url, receiver, args, Path(tmp))
        finally:
            emu.close()
            receiver.close()
    report(*results)
    print(f"{args.events:,} events, {args.receipts:,} receipts per consumer run; "
          f"synchronous_commit {args.synchronous_commit}; {load.line()}")  # fmt: skip


if __name__ == "__main__":
    main()
