"""Shared helpers of the reliability scenarios (docs/reliability.md).

* receipt bodies with known keys, and the database read-backs that compare them exactly;
* ``QueueTap``: counts what the emulator's queue really handed out and deleted (redeliveries,
  deletes in a time window), by wrapping one in-process ``MnsQueue``;
* ``CutProxy``: a TCP proxy whose ``cut()`` is airtight (no connection survives or slips in);
* ``max_in_window``: the most events in any window of a given width (rate-limit proof);
* ``wait_for``: polling with a generous deadline and a message;
* ``raw_request``: exact bytes to an HTTP port, the whole answer back;
* ``find_secrets``: which known secret values occur in which texts.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from receiptd.db.engine import create_db_engine
from receiptd.db.models import DEAD, REPORT, SEND
from receiptd_emulator import Emulator
from tests.peers import close, pump

Key = tuple[str, str]


def receipt_fields(i: int, prefix: str = "7") -> dict[str, object]:
    """A valid SmsReport body's fields; (biz_id, phone_number) is unique per ``i``."""
    failed = i % 9 == 0
    return {
        "phone_number": f"139{i:08d}",
        "success": not failed,
        "biz_id": f"{prefix}{i:014d}^0",
        "out_id": f"o{i}",
        "send_time": "2026-11-25 10:00:00",
        "report_time": "2026-11-25 10:00:04",
        "err_code": "MK:0001" if failed else "DELIVERED",
        "err_msg": "号码状态异常" if failed else "用户接收成功",
        "sms_size": "1",
    }


def receipt_key(i: int, prefix: str = "7") -> Key:
    fields = receipt_fields(i, prefix)
    return (str(fields["biz_id"]), str(fields["phone_number"]))


class Db:
    """One engine for the test's own read-backs (never through the daemon's proxy)."""

    def __init__(self, url: str) -> None:
        self.engine = create_db_engine(url)

    def close(self) -> None:
        self.engine.dispose()

    def scalar(self, query: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one()

    def report_rows(self) -> int:
        return int(self.scalar(sa.select(sa.func.count()).select_from(REPORT)))

    def report_keys(self) -> list[Key]:
        """Every (biz_id, phone_number) row of sms_report, duplicates kept."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(REPORT.c.biz_id, REPORT.c.phone_number))
            return [(r[0], r[1]) for r in rows]

    def sends(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(SEND))]

    def dead_letters(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(DEAD))]

    def count(self, table: sa.Table) -> int:
        return int(self.scalar(sa.select(sa.func.count()).select_from(table)))


def queue_total(emu: Emulator, queue: str = "report") -> int:
    """visible + in flight + delayed: every message the queue still holds."""
    return sum(emu.queue_depth(queue).values())


@dataclass
class QueueTap:
    """Wraps one emulator queue's ``receive`` and ``delete_many`` to count what happened.

    ``deliveries``: messages handed out; ``redeliveries``: those handed out more than once
    (DequeueCount > 1: a kill, an outage or a lost answer made the queue deliver them again);
    ``deletes``: (monotonic time, messages actually deleted) per delete call.
    """

    deliveries: int = 0
    redeliveries: int = 0
    deletes: list[tuple[float, int]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def attach(cls, emu: Emulator, queue: str = "report") -> QueueTap:
        tap = cls()
        target = emu.mns.queue(emu.queue_name(queue))
        receive, delete_many = target.receive, target.delete_many

        def counting_receive(*args: Any, **kwargs: Any) -> Any:
            views = receive(*args, **kwargs)
            with tap._lock:
                tap.deliveries += len(views)
                tap.redeliveries += sum(1 for v in views if v.dequeue_count > 1)
            return views

        def counting_delete(handles: list[str]) -> Any:
            failed = delete_many(handles)
            with tap._lock:
                tap.deletes.append((time.monotonic(), len(handles) - len(failed)))
            return failed

        target.receive = counting_receive  # type: ignore[method-assign]
        target.delete_many = counting_delete  # type: ignore[method-assign]
        return tap

    def deleted_between(self, start: float, end: float) -> int:
        with self._lock:
            return sum(n for t, n in self.deletes if start <= t < end)

    @property
    def deleted(self) -> int:
        with self._lock:
            return sum(n for _, n in self.deletes)


def max_in_window(times: Iterable[float], width: float = 1.0) -> int:
    """The largest number of events inside any half-open window [t, t + width)."""
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - width:
            start += 1
        best = max(best, end - start + 1)
    return best


def wait_for(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = 0.1,
    alive: Callable[[], None] | None = None,
) -> float:
    """Seconds until ``predicate()`` held; AssertionError naming ``what`` on timeout.

    ``alive`` is called each round and should raise if a process under test died.
    """
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if alive is not None:
            alive()
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(interval)


def raw_request(port: int, data: bytes) -> tuple[int, bytes]:
    """Send raw bytes; (status, whole answer: head and body). Status 0: no answer."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        while not _complete(answer):
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            answer += chunk
    status_line = answer.split(b"\r\n", 1)[0].split()
    return (int(status_line[1]) if len(status_line) > 1 else 0), answer


def _complete(answer: bytes) -> bool:
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False  # no length: read to the end


def find_secrets(texts: Sequence[tuple[str, str]], secrets: Iterable[str]) -> list[str]:
    """``where: secret`` for every secret value found in any of the (where, text) pairs."""
    found = []
    for secret in secrets:
        for where, text in texts:
            if secret and secret in text:
                found.append(f"{where}: {secret[:6]}…")
    return found


class CutProxy:
    """Forwards 127.0.0.1:<port> to ``target``. ``cut()`` closes every connection and refuses
    new ones until ``restore()``; a connection accepted while cutting is closed too (the accept
    loop re-checks under the same lock), and pump threads never raise on closed sockets."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._up = True
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    def start(self) -> CutProxy:
        self._thread.start()
        return self

    def cut(self) -> None:
        with self._lock:
            self._up = False
            victims, self._open = self._open, set()
        for s in victims:
            close(s)

    def restore(self) -> None:
        with self._lock:
            self._up = True

    def close(self) -> None:
        self._stop.set()
        self.cut()
        self._listener.close()
        self._thread.join(2)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                admitted = self._up
                if admitted:
                    self._open.update((client, upstream))
            if not admitted:
                close(client)
                close(upstream)
                continue
            threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
