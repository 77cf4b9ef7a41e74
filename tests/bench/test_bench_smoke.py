"""Every benchmark script, run the way ``make bench`` runs it but at its smallest sizes.

A benchmark that no longer imports or runs (a moved module, a schema its bulk load predates)
fails here instead of on the day someone needs its figures. Each test starts the script as a
subprocess of this interpreter from the repository root and checks that it exits 0, printed
its table and the load-average line, kept receiptd's info logs out of its output, and dropped
every scratch database it announced (bench/harness.py). The figures themselves are not
checked: at these sizes they mean nothing.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import SERVERS, _unavailable

ROOT = Path(__file__).resolve().parents[2]
CREATED = re.compile(r"^bench: scratch database (\w+) created$", re.MULTILINE)
DROPPED = re.compile(r"^bench: scratch database (\w+) dropped$", re.MULTILINE)
INFO_LOG = re.compile(r"\[info\s*\]|\"level\": \"info\"")
WAIT = ["--consumer-wait", "1"]  # each `consume --until-idle` ends with one long poll of it


@pytest.fixture(scope="module")
def server() -> sa.Engine:
    """The PostgreSQL server the benchmarks create their scratch databases on."""
    engine = sa.create_engine(SERVERS["postgresql"])
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        _unavailable("postgresql", exc)
    return engine


def existing(engine: sa.Engine, names: list[str]) -> list[str]:
    query = sa.text("SELECT datname FROM pg_database WHERE datname = ANY(:names)")
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(query, {"names": names})]


def bench(script: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(ROOT / "bench" / script), *args]
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: the script still drops its databases
        out, err = proc.communicate(timeout=60)
        pytest.fail(f"{script} ran over {timeout} s\n{out[-3000:]}\n{err[-3000:]}")
    assert proc.returncode == 0, f"{script} exited {proc.returncode}\n{out[-3000:]}\n{err[-5000:]}"
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def check(done: subprocess.CompletedProcess[str], server: sa.Engine, table: str) -> None:
    """The table and the load average on stdout, no info logs, every scratch database gone."""
    assert table in done.stdout, done.stdout
    assert re.search(r"load average [\d.]+ before / [\d.]+ after", done.stdout), done.stdout
    assert not INFO_LOG.search(done.stdout), done.stdout
    created = CREATED.findall(done.stderr)
    assert sorted(DROPPED.findall(done.stderr)) == sorted(created), done.stderr
    assert existing(server, created) == []


def test_emulator_bench(server: sa.Engine) -> None:
    done = bench("emulator.py", "--messages", "500", "--runs", "1", "--min-rate", "0")
    check(done, server, "messages received+deleted")


def test_consumer_bench(server: sa.Engine) -> None:
    done = bench(
        "consumer.py", "--receipts", "200", "--demo-receipts", "20", "--rate", "200",
        "--seconds", "1", "--latency-ms", "0", "--backends", "postgresql", "--no-baseline", *WAIT,
    )  # fmt: skip
    check(done, server, "receiptd/s  demo/s")
    assert len(CREATED.findall(done.stderr)) == 1


def test_polling_bench(server: sa.Engine) -> None:
    done = bench(
        "polling.py", "--idle-seconds", "2", "--capped-seconds", "2", "--warmup", "1",
        "--settle", "2", "--no-baseline",
    )  # fmt: skip
    check(done, server, "idle req/h")
    assert "receiptd now" in done.stdout


def test_compensator_bench(server: sa.Engine) -> None:
    done = bench(
        "compensator.py", "--mix-sends", "20", "--sends", "100", "--rate", "10000",
        "--never-sends", "2", "--never-days", "1",
    )  # fmt: skip
    check(done, server, "| never-settling sends |")
    assert "| mix (SDK + emulator) | 20 |" in done.stdout


def test_push_bench(server: sa.Engine) -> None:
    done = bench(
        "push.py", "--receipts", "100", "--concurrency", "2", "--rate", "200", "--seconds", "1"
    )
    check(done, server, "push rec/s")
    assert "rows 600 for 600 receipts sent" in done.stdout  # 100 per size and path


def test_webhooks_bench(server: sa.Engine) -> None:
    done = bench("webhooks.py", "--events", "50", "--receipts", "50", "--latency-ms", "0", *WAIT)
    check(done, server, "events delivered to a local receiver")
    assert "receiptd run receipts/s" in done.stdout


def test_scale_bench(server: sa.Engine) -> None:
    done = bench(
        "scale.py", "--rows", "20000", "--pending-share", "0.5", "--reps", "2",
        "--settle-reps", "2", "--consumer-receipts", "100", *WAIT,
    )  # fmt: skip
    check(done, server, "| claim ")
    assert len(CREATED.findall(done.stderr)) == 2


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
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert DROPPED.findall(err) == [found.group(1)], err
    assert existing(server, [found.group(1)]) == []
