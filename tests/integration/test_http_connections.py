"""The connection bounds of a real listener over real sockets, on a controlled clock.

The deadlines are read from the clock the test moves; the listener's once-a-second check is
run at once in its own loop thread (``check``), so no test waits for time to pass.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from receiptd.daemon.ops import OpsServer
from receiptd.web import connections

HEAD = b"POST /push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
LIMITS = connections.Limits(
    max_connections=64, per_source=4, header_timeout=10, body_timeout=30, idle_timeout=60
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Listener:
    """An OpsServer with a trivial app (it can be held in a request by ``gate``)."""

    def __init__(self, limits: connections.Limits) -> None:
        self.clock = Clock()
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.server = OpsServer(self._app, "127.0.0.1", 0, limits=limits, clock=self.clock)
        self.server.start()

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        environ["wsgi.input"].read()
        self.entered.set()
        assert self.gate.wait(10)
        start_response("200 OK", [("Content-Length", "2"), ("Content-Type", "text/plain")])
        return [b"ok"]

    def in_loop(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` in the listener's event loop and wait until it ran."""
        done = threading.Event()
        guarded = self.server._server

        def run() -> None:
            fn()
            done.set()

        guarded.trigger.pull_trigger(run)
        assert done.wait(5)

    def check(self, advance: float = 0.0) -> None:
        """Move the clock, then run the deadline check now."""
        self.clock.now += advance
        self.in_loop(lambda: self.server._server.maintenance(0))

    def held(self) -> int:
        count: list[int] = []
        self.in_loop(lambda: count.append(len(self.server._server.active_channels)))
        return count[0]

    def connect(self, source: str = "127.0.0.1", data: bytes = b"") -> socket.socket:
        sock = socket.create_connection(
            ("127.0.0.1", self.server.port), timeout=5, source_address=(source, 0)
        )
        if data:
            sock.sendall(data)
        return sock

    def admit(self, source: str = "127.0.0.1", data: bytes = b"") -> socket.socket:
        """Connect, and wait until the listener holds the connection and has read ``data``
        (its clock stamps both when it does, not when the kernel does)."""
        sock = self.connect(source, data)
        me = sock.getsockname()
        self.until(lambda: self._has_read(me, bool(data)))
        return sock

    def _has_read(self, peer: tuple[str, int], wanted: bool) -> bool:
        found: list[Any] = []
        channels = self.server._server.active_channels
        self.in_loop(lambda: found.extend(c for c in channels.values() if c.addr == peer))
        if not found:
            return False
        channel = found[0]
        return not wanted or bool(channel.request or channel.requests or channel.stamps.reused)

    def until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "condition not met"
            time.sleep(0.005)

    def served_all(self) -> bool:
        return bool(self.server._server.task_dispatcher.active_count == 0)


@pytest.fixture
def listener() -> Iterator[Listener]:
    handle = Listener(LIMITS)
    yield handle
    handle.gate.set()
    handle.server.close()


def closed(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True when the peer closed (EOF or reset) within ``timeout``; False if data came."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    finally:
        sock.close()


def still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        data = sock.recv(1024)
    except BlockingIOError:
        return True
    finally:
        sock.setblocking(True)
    return data != b""


def post(listener: Listener, source: str = "127.0.0.1") -> bytes:
    sock = listener.connect(source, HEAD + b"Content-Length: 2\r\nConnection: close\r\n\r\n[]")
    sock.settimeout(5)
    answer = b""
    while chunk := sock.recv(4096):
        answer += chunk
    sock.close()
    return answer.split(b"\r\n", 1)[0]


def test_headers_must_arrive_within_the_header_timeout_however_they_trickle(
    listener: Listener,
) -> None:
    silent = listener.admit()
    trickling = listener.admit(data=b"POST /push HTTP/1.1\r\n")
    listener.check(advance=5)
    trickling.sendall(b"X-A: 1\r\n")  # activity: waitress's own idle timeout would restart
    listener.check(advance=5)
    assert still_open(silent) and still_open(trickling)
    trickling.sendall(b"X-B: 2\r\n")
    listener.check(advance=1)  # 11 s after the connect
    assert closed(silent) and closed(trickling)


def test_a_body_must_arrive_within_the_body_timeout(listener: Listener) -> None:
    slow = listener.admit(data=HEAD + b"Content-Length: 100\r\n\r\n[")
    listener.check(advance=8)  # the headers were read at once: the body's deadline runs
    for _ in range(5):
        slow.sendall(b" ")
        listener.check(advance=4)  # 28 s after the headers
    assert still_open(slow)
    listener.check(advance=3)
    assert closed(slow)


def test_a_kept_alive_connection_is_idle_from_its_last_answer(listener: Listener) -> None:
    sock = listener.admit(data=HEAD + b"Content-Length: 2\r\n\r\n[]")
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    listener.until(listener.served_all)  # the worker has stamped its answer
    listener.check(advance=59)  # the idle timeout (60 s), not the header timeout, applies
    assert still_open(sock)
    listener.check(advance=2)
    assert closed(sock)


def test_a_source_over_its_bound_is_refused_while_others_are_served(
    listener: Listener,
) -> None:
    held = [listener.admit("127.0.0.5", b"POST /") for _ in range(LIMITS.per_source)]
    assert closed(listener.connect("127.0.0.5"))  # the fifth from 127.0.0.5
    assert post(listener, "127.0.0.6") == b"HTTP/1.1 200 OK"
    assert all(still_open(s) for s in held)
    held.pop().close()  # a bound on what is held, not a ban: room again once one is gone
    listener.until(lambda: listener.held() == LIMITS.per_source - 1)
    assert post(listener, "127.0.0.5") == b"HTTP/1.1 200 OK"
    for sock in held:
        sock.close()


def test_a_full_listener_frees_the_connections_past_their_deadline_before_shedding(
    listener: Listener,
) -> None:
    """The once-a-second check marks the connections past their deadline to be closed on the
    loop's next pass; a connection accepted in between (the same pass) used to find the
    listener still full of them and shed live ones in their place."""
    per_source = LIMITS.per_source
    old = [listener.admit(f"127.0.4.{i // per_source + 1}") for i in range(32)]
    listener.clock.now += 6
    young = [listener.admit(f"127.0.5.{i // per_source + 1}") for i in range(32)]
    listener.clock.now += 5  # the old ones 11 s after their connect: past the 10 s deadline

    def check_then_accept() -> None:
        guarded = listener.server._server
        guarded.maintenance(0)
        assert guarded._room_for("127.0.6.1")

    listener.in_loop(check_then_accept)
    assert all(closed(s) for s in old)
    assert all(still_open(s) for s in young)
    for sock in young:
        sock.close()


def test_a_full_listener_sheds_the_longest_waiting_never_one_being_served(
    listener: Listener,
) -> None:
    listener.gate.clear()
    served = listener.admit("127.0.1.1", HEAD + b"Content-Length: 2\r\n\r\n[]")
    assert listener.entered.wait(5)  # a worker holds this request, oldest of all
    idle = []
    for i in range(LIMITS.max_connections - 1):
        listener.clock.now += 0.01
        idle.append(listener.admit(f"127.0.2.{i + 1}", b"POST /push HTTP/1.1\r\n"))
    listener.clock.now += 0.01
    newcomer = listener.connect("127.0.3.1")  # one more: the two longest-waiting go
    shed = LIMITS.max_connections // connections.SHED_FRACTION
    assert all(closed(s) for s in idle[:shed])
    assert all(still_open(s) for s in idle[shed:])
    newcomer.sendall(HEAD + b"Content-Length: 2\r\nConnection: close\r\n\r\n[]")
    listener.gate.set()
    assert served.recv(4096).startswith(b"HTTP/1.1 200")  # the served one was never shed
    assert newcomer.recv(4096).startswith(b"HTTP/1.1 200")
    for sock in [served, newcomer, *idle[shed:]]:
        sock.close()
