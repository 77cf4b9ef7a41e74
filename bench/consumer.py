"""Consumer benchmark: receiptd versus the provider's demo loop, on SQLite and PostgreSQL.

    .venv/bin/python bench/consumer.py [--receipts 10000] [--demo-receipts 1000] [--latency-ms 3]
        [--backends sqlite,postgresql] [--consumer-wait SECONDS] [--no-baseline]

Everything runs against one emulator (a child process) and the same databases, in one run, in
two scenarios per database:

* loopback: the emulator answers in well under 1 ms, which flatters the demo loop's one
  message per round trip (the honest worst case for the ratio);
* network RTT: the emulator adds ``--latency-ms`` to every MNS request (receive, delete),
  like a real network round trip (``FaultSpec(latency=..., latency_rate=1.0)`` on the "mns"
  group; the token API is not delayed). The delay is a ``time.sleep`` in the emulator thread
  serving that connection (one thread per connection), so concurrent connections are delayed
  in parallel, as on a network. Run with fewer receipts (``--latency-receipts``,
  ``--latency-demo-receipts``) and, besides production settings, an extra, labelled receiptd
  run with ``--latency-threads`` report threads (a latency-bound consumer scales with threads).

In each scenario:

* receiptd: the shipped command, ``receiptd consume --queue report --until-idle``, in its own
  process with production settings (token mode, default threads, batch size and long poll;
  only the endpoints, keys and database URL are set). Throughput is end to end, queued →
  committed and deleted: from the first receive (the emulator's visible count drops) to the
  moment the queue holds nothing (every message deleted). Its peak RSS is the process's own
  ``VmHWM`` (/proc, polled until it exits), its CPU from /proc during the measured window,
  split into the MNS SDK's share and receiptd's own by py-spy samples over that window
  (``Split``; ``--no-split`` skips the sampling, which adds ~10 % CPU on two cores).
* The demo loop, as the provider's Python demo for MNS receipts does it: one
  ``receive_message(wait_seconds=3)`` with the SDK's default base64 decoding, ``json.loads``,
  insert and commit one row, ``delete_message`` of that one message.
* p99 queued → committed latency at a steady rate, with the production consumer wiring
  (``receiptd.wiring.consumers``) in this process (loopback scenario only).

Every run checks that each receipt was committed (row count) and deleted (queue empty). A run
starts only once the emulator holds no long poll: a poll that a stopped consumer abandoned
(``receiptd run`` on SIGTERM, the p99 run's ``stop()``) is still held by the server until its
wait ends and would take a batch of the next run's messages and keep it invisible for the
visibility timeout (30 s), out of reach of ``consume --until-idle`` (docs/consumer.md, "Until
idle").
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import baseline  # bench/baseline.py
import harness  # bench/harness.py
import mns
import sqlalchemy as sa
from mns.account import Account
from mns.mns_exception import MNSServerException

from receiptd import domain, ports, wiring
from receiptd.config import Settings
from receiptd.daemon.health import Health
from receiptd.db import migrate
from receiptd.db.engine import create_db_engine
from receiptd.db.models import REPORT
from receiptd.db.store import SqlStore
from receiptd.testing import emulated

TICKS = os.sysconf("SC_CLK_TCK")


def body(i: int) -> str:
    return domain.encode_body(
        {"biz_id": f"{i}^0", "phone_number": f"138{i:08d}", "success": True,
         "send_time": "2026-11-25 16:00:00", "report_time": "2026-11-25 16:00:03",
         "err_code": "DELIVERED", "err_msg": "用户接收成功", "sms_size": "1"}
    )  # fmt: skip


# --- the emulator, in a child process ------------------------------------------------------


def _emulator_child(conn: Any) -> None:
    from receiptd_emulator.emulator import Emulator
    from receiptd_emulator.faults import FaultSpec

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
                conn.send(emu.queue_depth("report"))
            elif op == "quiet":
                conn.send(_quiet(emu))
            elif op == "latency":  # seconds added to every MNS request (0: none)
                (seconds,) = args
                spec = FaultSpec(latency=seconds, latency_rate=1.0 if seconds else 0.0)
                emu.set_faults("mns", spec)
                conn.send(True)


def _quiet(emu: Any, timeout: float = 35.0) -> bool:
    """Wait until no long poll is held (an abandoned one ends with its wait, at most 30 s)."""
    deadline = time.monotonic() + timeout
    while emu.long_polls()["holding"]:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


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
    """An emulator in a child process, driven by (op, args) messages over a pipe; ``child``
    is the child's loop (bench/polling.py has its own). ``settings``: environment beyond
    production's for every receiptd started against it (``harness.consumer_overrides``)."""

    def __init__(
        self,
        child_main: Callable[[Any], None] = _emulator_child,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.conn, child = mp.Pipe()
        self.proc = mp.get_context("spawn").Process(target=child_main, args=(child,))
        self.proc.start()
        self.info = argparse.Namespace(**self.conn.recv())
        self.settings = settings or {}

    def call(self, op: str, *args: Any) -> Any:
        self.conn.send((op, args))
        return self.conn.recv()

    def depth(self) -> int:
        return sum(self.call("depth").values())

    def fill(self, start: int, count: int) -> None:
        """Enqueue receipts ``start .. start + count`` once no long poll is held (see above)."""
        assert self.call("quiet"), "a long poll is still held 35 s on"
        assert self.depth() == 0, self.call("depth")
        self.call("fill", start, count)

    def close(self) -> None:
        self.conn.send(None)
        self.proc.join(10)


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a live process (all threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_kb(pid: int) -> int:
    """VmHWM of a live process: its own peak RSS since exec (0 once it has exited).

    Not ``wait4()``'s ``ru_maxrss``: on Linux that also counts the spawning process's peak
    (exec records the old address space's high-water mark, and with vfork that address space
    is this process's), so a consumer spawned by a grown bench process reports the bench's size.
    """
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# --- receiptd, in its own process -------------------------------------------------------


def consumer_env(emu: Emu, url: str, **extra: str) -> dict[str, str]:
    """Production settings except where receiptd must find the emulator and the database."""
    settings = {"RECEIPTD_LOG_FORMAT": "json", **emu.settings, **extra}
    return emulated.environ(emu.info, url, settings)


@dataclass
class Run:
    rate: float
    rss_mb: float
    cpu_ms_per_1k: float
    emulator_cpu_ms_per_1k: float
    sdk_share: float | None = None  # of the consumer's GIL samples (``Split``); None: not split

    def split_ms_per_1k(self) -> tuple[float, float] | None:
        """(SDK, receiptd's own) CPU per 1,000 receipts: the sampling share times the CPU."""
        if self.sdk_share is None:
            return None
        sdk = self.sdk_share * self.cpu_ms_per_1k
        return sdk, self.cpu_ms_per_1k - sdk


class Split:
    """Which share of the consumer's CPU the MNS SDK spends, from py-spy samples.

    py-spy attaches to the running consumer when the measured window opens and is stopped when
    it closes. ``--gil`` keeps only the thread holding the GIL: the consumer is bound by it, and
    py-spy's idle detection counts threads waiting in psycopg or a socket as busy, while with
    ``--gil`` every sample is Python running. ``--nonblocking`` reads the stacks without pausing
    the consumer, so its CPU and throughput stay as measured. A sample whose stack passes
    through the SDK package (``mns/``: its requests, http.client under them, the minidom XML
    decoding) is the SDK's; every other one is receiptd's own (decoding, the store, metrics,
    SQLAlchemy and psycopg under them); a sample without a stack is left out of both.
    """

    RATE = 100  # samples/s: ~250 at 10,000 receipts (±3 % share); more perturbs the consumer

    def __init__(self, pid: int, raw: Path) -> None:
        self.raw = raw
        spy = Path(sys.executable).with_name("py-spy")
        cmd = [str(spy), "record", "--pid", str(pid), "--gil", "--nonblocking", "--rate",
               str(self.RATE), "--full-filenames", "--format", "raw", "-o", str(raw)]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> float | None:
        """The SDK's share of the samples (None: none taken, e.g. a window shorter than the
        attach, or py-spy unable to attach)."""
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        return sdk_share(self.raw.read_text() if self.raw.exists() else "")


SDK_DIR = str(Path(mns.__file__).resolve().parent) + os.sep


def sdk_share(raw: str) -> float | None:
    """SDK samples / samples with a stack, from py-spy's raw format (``frame;frame;... N``)."""
    sdk = total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack.strip() or not count.isdigit():
            continue
        total += int(count)
        if SDK_DIR in stack:
            sdk += int(count)
    return sdk / total if total else None


def receiptd_run(
    emu: Emu,
    engine: sa.Engine,
    url: str,
    n: int,
    log: Path,
    start: int = 0,
    split: bool = False,
    **extra: str,
) -> Run:
    """``receiptd consume`` on ``n`` receipts (``extra``: settings beyond production's);
    ``split``: sample it with py-spy over the window for the SDK's share (``Split``)."""
    before = engine_rows(engine)
    emu.fill(start, n)
    cmd = [sys.executable, "-m", "receiptd", "consume", "--queue", "report", "--until-idle"]
    with log.open("w") as out:
        # cwd "/": `python -m` puts the working directory first on sys.path, before PYTHONPATH
        # (the baseline's tree), so a checkout's own receiptd/ must not be there.
        env = consumer_env(emu, url, **extra)
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out, cwd="/")
    # Window: first receive (visible count drops) → queue empty (every message deleted).
    peak = 0
    while emu.call("depth")["visible"] == n:
        peak = max(peak, _alive(proc, log))
    t0, cpu0, emu0 = time.monotonic(), cpu_seconds(proc.pid), cpu_seconds(emu.proc.pid)
    sampler = Split(proc.pid, log.with_suffix(".spy")) if split else None
    while emu.depth():
        peak = max(peak, _alive(proc, log))
    t1, cpu1, emu1 = time.monotonic(), cpu_seconds(proc.pid), cpu_seconds(emu.proc.pid)
    share = sampler.stop() if sampler else None
    while not (waited := os.wait4(proc.pid, os.WNOHANG))[0]:  # VmHWM until it exits
        peak = max(peak, peak_rss_kb(proc.pid))
        time.sleep(0.01)
    status = waited[1]
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, log.read_text()[-2000:]
    stored = engine_rows(engine) - before
    assert stored == n and emu.depth() == 0, (stored, log.read_text()[-2000:])
    per_1k = 1000 / n * 1000
    return Run(
        rate=n / (t1 - t0),
        rss_mb=peak / 1024,
        cpu_ms_per_1k=(cpu1 - cpu0) * per_1k,
        emulator_cpu_ms_per_1k=(emu1 - emu0) * per_1k,
        sdk_share=share,
    )


def _alive(proc: subprocess.Popen[bytes], log: Path) -> int:
    """Asserts the consumer still runs (the queue is not empty yet); returns its VmHWM (kB)."""
    assert proc.poll() is None, "exited before the queue was empty:\n" + log.read_text()[-2000:]
    time.sleep(0.002)
    return peak_rss_kb(proc.pid)


def engine_rows(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(REPORT)).scalar_one())


# --- the demo loop and the latency run (in this process) ----------------------------------


def demo_rate(emu: Emu, engine: sa.Engine, n: int, start: int) -> float:
    """The demo's shape: one message per round trip, base64 by the SDK, one commit, one delete."""
    before = engine_rows(engine)
    emu.fill(start, n)
    # The demo reads with a token; the owner key keeps this loop free of token logic.
    account = Account(
        emu.info.mns_endpoint, emu.info.mns_owner_access_key_id,
        emu.info.mns_owner_access_key_secret,
    )  # fmt: skip
    queue = account.get_queue(emu.info.report_queue)  # default encoding: SDK base64-decodes
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
    elapsed = time.monotonic() - began
    assert done == n and engine_rows(engine) - before == n and emu.depth() == 0
    return done / elapsed


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


def p99_latency(emu: Emu, engine: sa.Engine, url: str, rate: int, seconds: float) -> float:
    prefix = "RECEIPTD_"
    env = consumer_env(emu, url).items()
    settings = Settings.model_validate(
        {k.removeprefix(prefix).lower(): v for k, v in env if k.startswith(prefix)}
    )
    sink = TimingSink(engine)
    (c,) = wiring.consumers(settings, sink, Health(), [domain.MessageType.REPORT])
    c.start()
    sent = emu.call("steady", 20_000_000, rate, seconds)
    while emu.depth() and c.alive:
        time.sleep(0.2)
    c.stop()
    c.join(settings.consumer_wait_seconds + 10)
    # The stop closed the leader's idle long poll; the emulator's side of it still waits out
    # its wait: the next run's Emu.fill waits for it to end.
    latencies = sorted(sink.committed[m] - t for m, t in sent.items() if m in sink.committed)
    assert len(latencies) == len(sent), (len(latencies), len(sent))
    return float(latencies[int(len(latencies) * 0.99) - 1])


# --- databases ----------------------------------------------------------------------------


def database_url(backend: str, tmp: str, scratch: harness.Scratch) -> str:
    if backend == "postgresql":
        return scratch.create()
    return f"sqlite:///{tmp}/receiptd_bench_{uuid.uuid4().hex[:8]}.db"


@dataclass
class Row:
    """One line of the table: a receiptd run against the demo loop of the same scenario."""

    backend: str
    rtt: str
    threads: str
    run: Run
    demo: float
    p99: float | None = None


def run_backend(emu: Emu, backend: str, url: str, args: argparse.Namespace) -> list[Row]:
    engine = create_db_engine(url)
    migrate.upgrade(engine)
    tmp = Path(args.tmp)
    prod = f"{Settings.model_fields['consumer_report_threads'].default} (prod)"
    split = not args.no_split
    rows = []
    try:
        # Loopback: the emulator's sub-ms round trip. Body indexes are disjoint per run
        # (biz_id and phone number derive from them), so every run inserts new rows.
        ours = receiptd_run(emu, engine, url, args.receipts, tmp / f"{backend}.log", split=split)
        old = _before(emu, engine, url, args.receipts, tmp / f"{backend}-before.log", args)
        demo = demo_rate(emu, engine, args.demo_receipts, start=10_000_000)
        p99 = p99_latency(emu, engine, url, args.rate, args.seconds)
        rows.append(Row(backend, "loopback", prod, ours, demo, p99))
        if old is not None:
            rows.append(Row(backend, "loopback", f"8 ({args.before_commit})", old, demo))
        if args.latency_ms > 0:
            rtt = f"+{args.latency_ms:g} ms"
            emu.call("latency", args.latency_ms / 1000)
            try:
                n, log = args.latency_receipts, tmp / f"{backend}-rtt.log"
                ours = receiptd_run(emu, engine, url, n, log, start=30_000_000, split=split)
                log = tmp / f"{backend}-rtt-before.log"
                old = _before(emu, engine, url, n, log, args, start=60_000_000)
                more = None
                if args.latency_threads:
                    threads = str(args.latency_threads)
                    log = tmp / f"{backend}-rtt-{threads}.log"
                    more = receiptd_run(
                        emu, engine, url, n, log, start=40_000_000, split=split,
                        RECEIPTD_CONSUMER_REPORT_THREADS=threads,
                    )  # fmt: skip
                demo = demo_rate(emu, engine, args.latency_demo_receipts, start=50_000_000)
            finally:
                emu.call("latency", 0.0)
            rows.append(Row(backend, rtt, prod, ours, demo))
            if old is not None:
                rows.append(Row(backend, rtt, f"8 ({args.before_commit})", old, demo))
            if more is not None:
                rows.append(Row(backend, rtt, f"{args.latency_threads} (extra)", more, demo))
    finally:
        engine.dispose()
    return rows


def _before(
    emu: Emu,
    engine: sa.Engine,
    url: str,
    n: int,
    log: Path,
    args: argparse.Namespace,
    start: int = 20_000_000,
) -> Run | None:
    """The same run with receiptd as it was at ``--baseline`` (None with ``--no-baseline``)."""
    if not args.before_tree:
        return None
    return receiptd_run(
        emu, engine, url, n, log, start=start, split=not args.no_split,
        PYTHONPATH=args.before_tree,
    )  # fmt: skip


def report(rows: list[Row], args: argparse.Namespace, load: harness.Load) -> None:
    print(f"{'backend':<11}{'MNS RTT':<10}{'threads':<11}{'receiptd/s':>10}{'demo/s':>8}"
          f"{'ratio':>8}{'p99 (s)':>9}{'RSS MB':>8}{'CPU ms/1k':>10}{'SDK ms/1k':>10}"
          f"{'own ms/1k':>10}{'emu ms/1k':>10}")  # fmt: skip
    for r in rows:
        p99 = "-" if r.p99 is None else f"{r.p99:.3f}"
        split = r.run.split_ms_per_1k()
        sdk, own = ("-", "-") if split is None else (f"{split[0]:.0f}", f"{split[1]:.0f}")
        print(
            f"{r.backend:<11}{r.rtt:<10}{r.threads:<11}{r.run.rate:>10.0f}{r.demo:>8.0f}"
            f"{r.run.rate / r.demo:>7.1f}x{p99:>9}{r.run.rss_mb:>8.0f}"
            f"{r.run.cpu_ms_per_1k:>10.0f}{sdk:>10}{own:>10}{r.run.emulator_cpu_ms_per_1k:>10.0f}"
        )
    print(
        f"loopback: receiptd {args.receipts:,} receipts, demo {args.demo_receipts:,}, p99 at "
        f"{args.rate:,}/s for {args.seconds:g} s"
    )
    if args.latency_ms > 0:
        print(
            f"+{args.latency_ms:g} ms: the emulator delays every MNS request "
            f"{args.latency_ms:g} ms; receiptd {args.latency_receipts:,} receipts, "
            f"demo {args.latency_demo_receipts:,}"
        )
    print(
        "threads: report consumer threads (prod: the default; extra: "
        "RECEIPTD_CONSUMER_REPORT_THREADS, not production; a commit: receiptd as it was at that "
        "commit, its own defaults, same run)\n"
        "RSS: peak (VmHWM) of the `receiptd consume` process alone; CPU: receiptd's and the "
        "emulator's CPU per 1,000 receipts in the measured window; SDK / own: that CPU split "
        "by the share of py-spy's GIL samples inside the MNS SDK (mns/) and outside it"
    )
    print(load.line())


def main() -> None:
    load = harness.start()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--receipts", type=int, default=10_000)
    parser.add_argument("--demo-receipts", type=int, default=1_000)
    parser.add_argument("--rate", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--latency-ms", type=float, default=3.0,
        help="round trip added to every MNS request in the second scenario (0: skip it)",
    )  # fmt: skip
    parser.add_argument("--latency-receipts", type=int, default=5_000)
    parser.add_argument("--latency-demo-receipts", type=int, default=500)
    parser.add_argument(
        "--latency-threads", type=int, default=8,
        help="extra receiptd run with this many report threads in that scenario (0: none)",
    )  # fmt: skip
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated")
    parser.add_argument("--tmp", default=None, help="scratch directory (default: a new one)")
    parser.add_argument("--baseline", default="", help="commit to compare with (default: the "
                        "merge base with main)")  # fmt: skip
    parser.add_argument("--no-baseline", action="store_true", help="skip the 'before' runs")
    parser.add_argument(
        "--no-split", action="store_true",
        help="no py-spy sampling of the consumer (the SDK and own columns show '-')",
    )  # fmt: skip
    harness.add_consumer_wait(parser)
    args = parser.parse_args()
    backends = args.backends.split(",")
    with tempfile.TemporaryDirectory(prefix="receiptd-bench-") as scratch_dir:
        args.tmp = args.tmp or scratch_dir
        args.before_tree, args.before_commit = "", ""
        if not args.no_baseline:
            where = Path(scratch_dir) / "baseline"
            args.before_tree, args.before_commit = baseline.tree(args.baseline, where)
        rows: list[Row] = []
        with harness.Scratch() as databases:
            emu = Emu(settings=harness.consumer_overrides(args))
            try:
                for backend in backends:
                    url = database_url(backend, args.tmp, databases)
                    rows += run_backend(emu, backend, url, args)
            finally:
                emu.close()
        report(rows, args, load)


if __name__ == "__main__":
    main()
