"""Every benchmark script, run the way ``make bench`` runs it but at its smallest sizes.

A benchmark that no longer imports or runs (a moved module, a schema its bulk load predates)
fails here instead of on the day someone needs its figures. Each script runs as a subprocess
of this interpreter from the repository root and must exit 0, print its table and the
load-average line, keep receiptd's info logs out of its output, and drop every scratch
database it announced (bench/harness.py). The figures themselves are not checked: at these
sizes they mean nothing.

The selected scripts are started side by side when the first of their tests runs (the short
ones niced, so the two longest set the pace): most of a smoke run is interpreter start-up and
waiting on sockets, so together they take well under the sum (docs/benchmarks.md has timings).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import SERVERS, unavailable

pytestmark = pytest.mark.timeout(600)  # side by side on a loaded machine; each run <= 300 s

ROOT = Path(__file__).resolve().parents[2]
CREATED = re.compile(r"^bench: scratch database (\w+) created$", re.MULTILINE)
DROPPED = re.compile(r"^bench: scratch database (\w+) dropped$", re.MULTILINE)
INFO_LOG = re.compile(r"\[info\s*\]|\"level\": \"info\"")
WAIT = ("--consumer-wait", "1")  # each `consume --until-idle` ends with one long poll of it


@dataclass(frozen=True)
class Smoke:
    table: str  # a header of the table the script prints
    script: str
    args: tuple[str, ...]  # its smallest sizes
    long: bool = False  # one of the longest: the others run niced, so these finish first


SMOKE = {  # by test name
    "test_emulator_bench": Smoke(
        "messages received+deleted", "emulator.py",
        ("--messages", "500", "--runs", "1", "--processes", "1"),
    ),
    "test_consumer_bench": Smoke(
        "receiptd/s  demo/s", "consumer.py",
        ("--receipts", "200", "--demo-receipts", "20", "--rate", "200", "--seconds", "1",
         "--latency-ms", "0", "--backends", "postgresql", "--no-baseline", *WAIT),
    ),
    "test_receipt_cost_bench": Smoke(
        "decode µs  store µs  driver µs", "receipt_cost.py",
        ("--receipts", "320", "--rounds", "1", "--sends"),
    ),
    "test_polling_bench": Smoke(
        "idle req/h", "polling.py",
        ("--idle-seconds", "2", "--capped-seconds", "2", "--warmup", "1", "--settle", "2",
         "--no-baseline"),
    ),
    "test_accounts_bench": Smoke(
        "accounts x 2 queues, idle", "accounts.py",
        ("--accounts", "2", "--idle-seconds", "2", "--warmup", "3", "--no-baseline"),
    ),
    "test_migration_bench": Smoke(
        "| probe (own connection", "migration.py", ("--rows", "20000"),
    ),
    "test_compensator_bench": Smoke(
        "| never-settling sends |", "compensator.py",
        ("--mix-sends", "20", "--mixed-sends", "20", "--sends", "100", "--rate", "10000",
         "--never-sends", "2", "--never-days", "1"),
    ),
    "test_push_bench": Smoke(
        "push rec/s", "push.py",
        ("--receipts", "100", "--concurrency", "2", "--rate", "200", "--seconds", "1",
         "--backlog", "200", "--servers-seconds", "1", "--granian-workers", "1"),
    ),
    "test_webhooks_bench": Smoke(
        "events delivered to a local receiver", "webhooks.py",
        ("--events", "50", "--receipts", "50", "--latency-ms", "0", *WAIT), long=True,
    ),
    "test_scale_bench": Smoke(
        "| claim ", "scale.py",
        ("--rows", "20000", "--pending-share", "0.5", "--reps", "2", "--settle-reps", "2",
         "--consumer-receipts", "100", *WAIT), long=True,
    ),
}  # fmt: skip
RUN_TIMEOUT = 300.0


@dataclass
class Run:
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    started: float

    def finish(self) -> tuple[str, str]:
        """Wait for the script; fail unless it exits 0. Returns (stdout, stderr)."""
        left = max(1.0, RUN_TIMEOUT - (time.monotonic() - self.started))
        try:
            self.proc.wait(left)
        except subprocess.TimeoutExpired:
            self.proc.terminate()  # SIGTERM: the script still drops its databases
            self.proc.wait(60)
            pytest.fail(f"ran over {RUN_TIMEOUT:g} s\n{self._tails()}")
        assert self.proc.returncode == 0, f"exited {self.proc.returncode}\n{self._tails()}"
        return self.out.read_text(), self.err.read_text()

    def _tails(self) -> str:
        return f"{self.out.read_text()[-3000:]}\n{self.err.read_text()[-5000:]}"


def start(smoke: Smoke, logs: Path) -> Run:
    """The script in the background; the short ones niced, so the long ones set the pace."""
    out, err = logs / f"{smoke.script}.out", logs / f"{smoke.script}.err"
    nice = [] if smoke.long else ["nice", "-n", "10"]
    command = [*nice, sys.executable, str(ROOT / "bench" / smoke.script), *smoke.args]
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=stdout, stderr=stderr)
    return Run(proc, out, err, time.monotonic())


@pytest.fixture(scope="module")
def server() -> Iterator[sa.Engine]:
    """The PostgreSQL server the benchmarks create their scratch databases on."""
    engine = sa.create_engine(SERVERS["postgresql"])
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        engine.dispose()
        unavailable("postgresql", exc)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, server: sa.Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Run]]:
    """The smoke runs of this session's selected tests, all started at once."""
    selected = [i.name for i in request.session.items if i.module is request.module]
    logs = tmp_path_factory.mktemp("bench")
    chosen = [name for name in selected if name in SMOKE]
    started = {name: start(SMOKE[name], logs) for name in chosen}
    yield started
    for run in started.values():
        if run.proc.poll() is None:
            run.proc.terminate()
            run.proc.wait(60)


def existing(engine: sa.Engine, names: list[str]) -> list[str]:
    query = sa.text("SELECT datname FROM pg_database WHERE datname = ANY(:names)")
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(query, {"names": names})]


@pytest.fixture
def done(
    request: pytest.FixtureRequest, runs: dict[str, Run], server: sa.Engine
) -> tuple[str, str]:
    """This test's script finished: exit 0, its table and the load average on stdout, no info
    logs, every scratch database it created dropped. Returns (stdout, stderr)."""
    out, err = runs[request.node.name].finish()
    assert SMOKE[request.node.name].table in out, out
    assert re.search(r"load average [\d.]+ before / [\d.]+ after", out), out
    assert not INFO_LOG.search(out), out
    created = CREATED.findall(err)
    assert sorted(DROPPED.findall(err)) == sorted(created), err
    assert existing(server, created) == []
    return out, err


def test_emulator_bench(done: tuple[str, str]) -> None:
    out, _ = done
    assert "(best of 1;" in out


def test_consumer_bench(done: tuple[str, str]) -> None:
    out, err = done
    assert re.search(r"^postgresql loopback ", out, re.MULTILINE), out
    assert len(CREATED.findall(err)) == 1


def test_receipt_cost_bench(done: tuple[str, str]) -> None:
    out, err = done
    # A row of figures, and the replay checked against the store (or the script exits 1).
    assert re.search(r"^1\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+-?[\d.]+\s+[\d.]+$", out, re.M), out
    assert len(CREATED.findall(err)) == 3


def test_polling_bench(done: tuple[str, str]) -> None:
    out, _ = done
    assert "receiptd now" in out and "provider demo loop" in out


def test_accounts_bench(done: tuple[str, str]) -> None:
    out, _ = done
    assert "receiptd now (one process, all accounts)" in out


def test_migration_bench(done: tuple[str, str]) -> None:
    out, err = done
    assert "migration 0004 -> 0005 on 20,000 sms_send" in out, out
    assert len(CREATED.findall(err)) == 1


def test_compensator_bench(done: tuple[str, str]) -> None:
    out, _ = done
    assert "| mix (SDK + emulator) | 20 |" in out and "| after: 72 h | 2 |" in out
    assert "| mixed sites (SDK + emulator) | 20 | 20 |" in out, out  # every send settled


def test_push_bench(done: tuple[str, str]) -> None:
    out, _ = done
    assert re.search(r"rows ([\d,]+) for \1 receipts sent", out), out
    assert re.search(r"consumer draining 200 receipts .*: p99 [\d.]+ ms", out), out
    for layout in ("waitress in receiptd run --roles push", "granian WSGI, 1 worker process "):
        assert re.search(rf"^{re.escape(layout)}.*\d+\s+[\d.]+\s+[\d.]+\s+[\d.]+$", out, re.M), out


def test_webhooks_bench(done: tuple[str, str]) -> None:
    out, _ = done
    assert "receiptd run receipts/s" in out


def test_scale_bench(done: tuple[str, str]) -> None:
    out, err = done
    assert "20,000 sms_send + 20,000 sms_report" in out
    assert len(CREATED.findall(err)) == 2


def test_scale_bench_drops_its_databases_when_stopped(server: sa.Engine) -> None:
    """SIGTERM while the first database loads: the run ends, and its database is dropped."""
    command = [sys.executable, str(ROOT / "bench" / "scale.py"), "--rows", "2000000"]
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    lines = []
    while not (found := CREATED.search(line := proc.stderr.readline())):
        assert line, f"exited before creating a database: {''.join(lines)}"
        lines.append(line)
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=120)
    finally:  # never leave the process and its pipes behind (they would fail a later test)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert DROPPED.findall(err) == [found.group(1)], err
    assert existing(server, [found.group(1)]) == []
