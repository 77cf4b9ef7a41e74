"""Hostile clients cannot silence the push listener of a real `receiptd run`.

500 connections that send half a request and wait, plus some that trickle their headers or
their body a byte at a time, are held open beside a valid Alibaba push: it is answered 200
within a second (the provider's cited answer budget is 700 ms) and its receipt is stored. A
source over its per-source bound is refused while another source is served; a full listener
closes its longest-waiting connections rather than stop accepting; headers and bodies that
never finish are cut at their deadlines however busily they trickle; the ops port is bounded
the same way. On SQLite, PostgreSQL and MariaDB (the receipt must be stored).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from receiptd.db.models import DEAD, INBOUND, REPORT, SEND
from receiptd_emulator import Emulator
from tests.conftest import _ensure_database, drop_server_database
from tests.system.daemon import Daemon, free_port
from tests.system.reliability import Db, receipt_fields, receipt_key, wait_for
from tests.system.test_push import TOKEN, start_daemon

pytestmark = pytest.mark.system

REPORT_PATH = f"/push/{TOKEN}/aliyun/SmsReport"
HALF_REQUEST = f"POST {REPORT_PATH} HTTP/1.1\r\nHost: receipts\r\nContent-Le".encode()
BODY_HEAD = (
    f"POST {REPORT_PATH} HTTP/1.1\r\nHost: receipts\r\nContent-Type: application/json\r\n"
    "Content-Length: 100000\r\n\r\n["
).encode()
IDLE = 500
SOURCES = 25  # 20 connections from each: under the default per-source bound of 32
TRICKLING = 20  # of each kind: headers a line at a time, a body a byte at a time
BUDGET = 1.0  # seconds; a behaviour bound (the provider's cited budget is 0.7 s), not a benchmark
# The crowd outlives the test's set-up on a loaded machine: here the deadlines do not act.
PATIENT = {"RECEIPTD_PUSH_HEADER_TIMEOUT": "120", "RECEIPTD_PUSH_BODY_TIMEOUT": "120"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mariadb"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    urls: dict[str, str] = {}
    url = _ensure_database(request.param, urls, Path(tmp_path_factory.mktemp("db")))
    yield url
    if request.param != "sqlite":
        drop_server_database(request.param, url)


@pytest.fixture
def db(database_url: str) -> Iterator[Db]:
    handle = Db(database_url)
    with handle.engine.begin() as conn:
        for table in (REPORT, INBOUND, DEAD, SEND):
            conn.execute(table.delete())
    yield handle
    handle.close()


@dataclass
class Running:
    daemon: Daemon
    push_port: int


@pytest.fixture
def patient(database_url: str, db: Db, tmp_path: Path) -> Iterator[Running]:
    """`receiptd run` with push on, the default bounds but long header and body deadlines."""
    yield from _running(database_url, tmp_path, **PATIENT)


def _running(url: str, tmp_path: Path, **extra: str) -> Iterator[Running]:
    port = free_port()
    with Emulator() as emu:
        daemon = start_daemon(emu, url, tmp_path, port, **extra)
        try:
            daemon.wait_until(daemon.ready, timeout=30)
            yield Running(daemon, port)
        finally:
            daemon.kill()


class Crowd:
    """Connections held open by this process, some trickling bytes from a thread."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[socket.socket] = []
        self.trickling: list[tuple[socket.socket, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)

    def __enter__(self) -> Crowd:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in [*self.idle, *(s for s, _ in self.trickling)]:
            sock.close()

    def connect(self, source: str, data: bytes) -> socket.socket:
        sock = socket.create_connection(
            ("127.0.0.1", self.port), timeout=10, source_address=(source, 0)
        )
        try:
            sock.sendall(data)
        except OSError:
            sock.close()  # refused at once: the caller's failure, not a socket left open
            raise
        return sock

    def hold(self, count: int, sources: int, first: int = 2) -> None:
        """``count`` half-requests spread over ``sources`` loopback addresses."""
        for i in range(count):
            self.idle.append(self.connect(_source(first + i % sources), HALF_REQUEST))

    def trickle(self, count: int, first: int) -> None:
        """``count`` slow headers (a line at a time) and ``count`` slow bodies (a byte)."""
        for i in range(count):
            head = self.connect(_source(first + i), f"POST {REPORT_PATH} HTTP/1.1\r\n".encode())
            self.trickling.append((head, b"X-Slow: 1\r\n"))
            self.trickling.append((self.connect(_source(first + count + i), BODY_HEAD), b" "))

    def _trickle(self) -> None:
        while not self._stop.wait(0.25):
            for sock, data in self.trickling:
                try:
                    sock.send(data)
                except OSError:
                    continue  # closed by the listener: that is what some tests wait for

    def open_count(self, socks: list[socket.socket] | None = None) -> int:
        """How many of ``socks`` (default: all) the listener still holds open."""
        return sum(_still_open(s) for s in (socks or [*self.idle, *self.trickler_socks]))

    @property
    def trickler_socks(self) -> list[socket.socket]:
        return [s for s, _ in self.trickling]


def _source(n: int) -> str:
    """A distinct loopback address per ``n`` (Linux routes all of 127/8 to lo)."""
    return f"127.0.{1 + n // 250}.{n % 250 + 1}"


def _still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1024) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def timed_push(port: int, elements: list[dict[str, object]], source: str = "127.0.0.1") -> Any:
    """POST an Alibaba SmsReport array; (status, JSON answer, seconds from connect to the
    whole answer)."""
    body = json.dumps(elements).encode()
    head = (
        f"POST {REPORT_PATH} HTTP/1.1\r\nHost: receipts\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), 10, (source, 0)) as sock:
        sock.sendall(head + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    seconds = time.monotonic() - started
    status_line, _, rest = answer.partition(b"\r\n")
    payload = json.loads(rest.partition(b"\r\n\r\n")[2] or b"null")
    return int(status_line.split()[1]), payload, seconds


def metric(daemon: Daemon, name: str, **labels: str) -> float:
    """One sample of the daemon's /metrics (0 when absent)."""
    status, text = daemon.get("/metrics")
    assert status == 200
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = rf"^{re.escape(name)}\{{{re.escape(want)}\}} (\S+)$"
    found = re.search(pattern, text.decode(), re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def held(daemon: Daemon, listener: str = "push") -> float:
    return metric(daemon, "receiptd_http_connections", listener=listener)


def test_500_idle_and_slow_connections_leave_a_push_answered_within_a_second(
    patient: Running, db: Db
) -> None:
    daemon, port = patient.daemon, patient.push_port
    crowd_size = IDLE + 2 * TRICKLING
    with Crowd(port) as crowd:
        crowd.hold(IDLE, SOURCES)
        crowd.trickle(TRICKLING, first=SOURCES + 2)
        daemon.wait_until(lambda: held(daemon) >= crowd_size, timeout=60)
        status, answer, seconds = timed_push(port, [receipt_fields(1), receipt_fields(2)])
        still_open = crowd.open_count()
        held_after = held(daemon)
    wait_for(lambda: len(db.report_keys()) == 2, 30, "the pushed receipts stored")
    assert (status, answer["code"]) == (200, 0)
    assert seconds < BUDGET, f"answered in {seconds:.3f} s beside {crowd_size} connections"
    assert sorted(db.report_keys()) == [receipt_key(1), receipt_key(2)]
    # Served beside the crowd, not instead of it: none of its connections was dropped.
    assert still_open == crowd_size and held_after >= crowd_size


def test_a_source_over_its_bound_is_refused_while_another_is_served(
    patient: Running, db: Db
) -> None:
    daemon, port = patient.daemon, patient.push_port
    with Crowd(port) as crowd:
        crowd.hold(32, sources=1, first=7)  # the default bound: 32 from one source
        daemon.wait_until(lambda: held(daemon) >= 32, timeout=30)
        with crowd.connect(_source(7), HALF_REQUEST) as one_more:
            one_more.settimeout(5)
            refused = _closed(one_more)
        status, answer, seconds = timed_push(port, [receipt_fields(3)], source=_source(8))
        still_open = crowd.open_count()
    assert refused, "the 33rd connection from one source was held"
    assert (status, answer["code"]) == (200, 0) and seconds < BUDGET
    assert still_open == 32  # refusing the newcomer closed none of the others
    assert closed_for(daemon, "source_limit") >= 1
    wait_for(lambda: db.report_keys() == [receipt_key(3)], 30, "the receipt stored")


def test_the_ops_port_stays_answerable_under_the_same_crowd(patient: Running) -> None:
    daemon = patient.daemon
    with Crowd(daemon.port) as crowd:
        crowd.hold(150, sources=10)  # more than the ops port's 100 connections
        daemon.wait_until(lambda: held(daemon, "ops") >= 90, timeout=30)
        started = time.monotonic()
        status, _ = daemon.get("/healthz")
        seconds = time.monotonic() - started
        shed = closed_for(daemon, "shed", listener="ops")
    assert status == 200 and seconds < BUDGET
    assert shed >= 50  # the oldest half-requests made room; accepting never stopped


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


TIGHT = {
    "RECEIPTD_PUSH_MAX_CONNECTIONS": "64",
    "RECEIPTD_PUSH_HEADER_TIMEOUT": "3",
    "RECEIPTD_PUSH_BODY_TIMEOUT": "3",
}


@pytest.fixture
def tight(database_url: str, db: Db, tmp_path: Path) -> Iterator[Running]:
    """`receiptd run` with a 64-connection push listener and 3 s deadlines."""
    yield from _running(database_url, tmp_path, **TIGHT)


def test_a_full_listener_sheds_and_unfinished_requests_are_cut(tight: Running, db: Db) -> None:
    daemon, port = tight.daemon, tight.push_port
    with Crowd(port) as crowd:
        crowd.hold(100, sources=50, first=20)  # over the 64 the listener holds: it sheds
        crowd.trickle(4, first=2)  # the youngest: they stay until their deadlines
        status, answer, seconds = timed_push(port, [receipt_fields(4)])
        started = time.monotonic()
        for sock in crowd.trickler_socks:  # still trickling: each is cut at its deadline
            sock.settimeout(15)
            assert _closed(sock)
        cut_after = time.monotonic() - started
        wait_for(lambda: crowd.open_count(crowd.idle) == 0, 15, "half-requests cut")
    assert (status, answer["code"]) == (200, 0) and seconds < BUDGET
    assert cut_after < 3 + 2 + 2  # deadline, the once-a-second check, a loaded machine
    assert closed_for(daemon, "shed") >= 36
    assert closed_for(daemon, "header_timeout") >= 4 + 1  # trickled headers, half-requests
    assert closed_for(daemon, "body_timeout") == 4
    wait_for(lambda: db.report_keys() == [receipt_key(4)], 30, "the receipt stored")


def closed_for(daemon: Daemon, reason: str, listener: str = "push") -> float:
    name = "receiptd_http_connections_closed_total"
    return metric(daemon, name, listener=listener, reason=reason)
