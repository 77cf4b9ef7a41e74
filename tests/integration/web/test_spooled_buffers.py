"""Bodies and answers too large for memory spool to temporary files (waitress's
``inbuf_overflow`` and ``outbuf_overflow``): however a connection ends, its files are closed
then, not left for the garbage collector (which finds them at some later test's teardown as
an unraisable ResourceWarning, a flake)."""

from __future__ import annotations

import gc
import http.client
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from waitress.adjustments import Adjustments

from receiptd.web import connections, server
from tests.integration.test_http_connections import Clock
from tests.integration.web.test_server import app

T = TypeVar("T")
SPOOLED_BODY = Adjustments.inbuf_overflow + 1  # a body this long is read into a file
SPOOLED_ANSWER = Adjustments.outbuf_overflow  # an answer this long (with its head) likewise


class Listener:
    """An HttpServer on the test app, its deadlines on a clock the test moves; ``/held`` is
    answered once ``gate`` is set (``entered`` once it is being served)."""

    def __init__(self, threads: int = 2) -> None:
        self.clock = Clock()
        self.limits = connections.Limits()
        self.gate, self.entered = threading.Event(), threading.Event()
        self.http = server.HttpServer(
            self._app, "127.0.0.1", 0, limits=self.limits, name="test", threads=threads,
            clock=self.clock,
        )  # fmt: skip
        self.http.start()
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.http.close()

    def _app(self, environ: dict[str, Any], start_response: server.StartResponse) -> list[bytes]:
        if environ["PATH_INFO"] == "/held":
            self.entered.set()
            assert self.gate.wait(10)
        return app(environ, start_response)

    def in_loop(self, fn: Callable[[], T]) -> T:
        """``fn``'s result, run in the listener's event loop (which owns the channels)."""
        done, result = threading.Event(), list[T]()

        def run() -> None:
            result.append(fn())
            done.set()

        self.http._server.trigger.pull_trigger(run)
        assert done.wait(5)
        return result[0]

    def body_read(self) -> int:
        """Bytes read of the body of the one request being read (0 when none is)."""
        channels = self.http._server.active_channels

        def read() -> int:
            reading = [c.request for c in channels.values() if c.request is not None]
            return int(reading[0].body_bytes_received) if reading else 0

        return self.in_loop(read)

    def held(self) -> int:
        return self.in_loop(lambda: len(self.http._server.active_channels))

    def until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "condition not met"
            time.sleep(0.005)


@pytest.fixture
def listener() -> Iterator[Listener]:
    handle = Listener()
    yield handle
    handle.gate.set()
    handle.close()


@pytest.fixture
def unclosed_files() -> Iterator[Callable[[], list[str]]]:
    """A function: the ResourceWarnings of files finalised unclosed so far in the test, in
    any thread, after a collection (a file in a reference cycle waits for the collector)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)

        def unclosed() -> list[str]:
            gc.collect()
            return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]

        yield unclosed


def spooling_head(length: int) -> bytes:
    return f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode()


def cut_in_a_spooled_body(listener: Listener) -> socket.socket:
    """A connection whose request has read more body than memory holds, and waits for more."""
    sock = socket.create_connection(("127.0.0.1", listener.http.port), timeout=5)
    sock.sendall(spooling_head(SPOOLED_BODY + 1000) + b"x" * SPOOLED_BODY)
    listener.until(lambda: listener.body_read() >= SPOOLED_BODY)
    return sock


def test_a_kept_alive_connection_with_a_spooled_answer_is_closed_with_it(
    listener: Listener, unclosed_files: Callable[[], list[str]]
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", listener.http.port, timeout=5)
    conn.request("POST", "/echo", body=b"x" * SPOOLED_ANSWER)
    response = conn.getresponse()
    assert response.status == 200 and len(response.read()) == SPOOLED_ANSWER
    listener.close()  # the connection still open: the listener closes it
    conn.close()
    assert unclosed_files() == []


def client_leaves(listener: Listener, sock: socket.socket) -> None:
    sock.close()
    listener.until(lambda: listener.held() == 0)


def body_deadline_passes(listener: Listener, sock: socket.socket) -> None:
    listener.clock.now += listener.limits.body_timeout + 1
    listener.in_loop(lambda: listener.http._server.maintenance(0))
    listener.until(lambda: listener.held() == 0)
    sock.close()


def listener_closes(listener: Listener, sock: socket.socket) -> None:
    listener.close()
    sock.close()


@pytest.mark.parametrize("end", [client_leaves, body_deadline_passes, listener_closes])
def test_a_connection_ended_in_a_spooled_body_closes_its_file(
    listener: Listener,
    unclosed_files: Callable[[], list[str]],
    end: Callable[[Listener, socket.socket], None],
) -> None:
    end(listener, cut_in_a_spooled_body(listener))
    assert unclosed_files() == []


def test_a_spooled_request_still_queued_when_the_listener_stops_closes_its_file(
    unclosed_files: Callable[[], list[str]],
) -> None:
    listener = Listener(threads=1)
    try:
        held = socket.create_connection(("127.0.0.1", listener.http.port), timeout=5)
        held.sendall(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        assert listener.entered.wait(5)  # the one worker is busy: the next request queues
        queued = socket.create_connection(("127.0.0.1", listener.http.port), timeout=5)
        queued.sendall(spooling_head(SPOOLED_BODY) + b"x" * SPOOLED_BODY)
        tasks = listener.http._server.task_dispatcher
        listener.until(lambda: len(tasks.queue) == 1)
        stopping = threading.Thread(target=listener.close)
        stopping.start()
        listener.until(lambda: tasks.stop_count == 1)  # the worker stops after its request
        listener.gate.set()
        stopping.join(10)
        assert not stopping.is_alive()
        held.close()
        queued.close()
    finally:
        listener.gate.set()
        listener.close()
    assert unclosed_files() == []
