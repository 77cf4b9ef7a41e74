"""The HTTP/1.1 server every emulated API shares, and the dispatcher in front of the routes.

One thread per connection (ThreadingHTTPServer) with keep-alive, because the MNS SDK holds one
persistent connection per client and long polls block a thread for up to 30 s. Responses are
written with a single send: split header/body writes meet Nagle + delayed ACK (40 ms stalls).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from typing import Any

from receiptd_emulator import timeutil
from receiptd_emulator.calls import CallLog, RecordedCall
from receiptd_emulator.faults import FaultDecision, FaultKind, Faults, QpsLimiter
from receiptd_emulator.http_types import Request, Response, decode_form, strip_absolute_uri
from receiptd_emulator.router import Route, Router

log = logging.getLogger(__name__)
MAX_BODY = 4 * 1024 * 1024
MAX_LINE = 65536
MAX_HEADERS = 100
_RESET = Response(0, outcome="reset", reset=True)


class Dispatcher:
    """Routes a request, applying injected faults and QPS limits (per account), and logs the
    call with the account it came from (`account_of`: a key id or IAM token -> its account's
    name, "" if none)."""

    def __init__(
        self,
        router: Router,
        faults: Faults,
        limiter: QpsLimiter,
        calls: CallLog,
        account_of: Callable[[str], str] = lambda key: "",
    ) -> None:
        self.router = router
        self.faults = faults
        self.limiter = limiter
        self.calls = calls
        self.account_of = account_of

    def handle(self, request: Request) -> Response:
        route = self.router.resolve(request)
        if route is None:
            return Response(404, b"Not Found", [("Content-Type", "text/plain")], "NotFound")
        api, params = route.classify(request)
        if not route.recorded:
            return route.handle(request, api)
        started = time.monotonic()
        key = _access_key_id(request, params)
        account = self.account_of(key or request.header("x-auth-token"))
        decision = self.faults.decide(route.group)
        response = self._answer(route, request, api, decision, account)
        self.calls.record(
            RecordedCall(
                api=api,
                params=params,
                monotonic=started,
                wall=timeutil.now_utc(),
                status=response.status,
                outcome=response.outcome,
                access_key_id=key,
                fault=decision.kind.value,
                duration=time.monotonic() - started,
                account=account,
            )
        )
        return response

    def _answer(
        self, route: Route, request: Request, api: str, decision: FaultDecision, account: str
    ) -> Response:
        if decision.delay:
            time.sleep(decision.delay)
        kind = decision.kind
        if kind is FaultKind.RESET_BEFORE:
            return _RESET
        if kind in (FaultKind.ERROR, FaultKind.THROTTLE):
            return route.fault_response(kind, request, api)
        if not self.limiter.allow(api, account):
            return route.fault_response(FaultKind.THROTTLE, request, api)
        response = route.handle(request, api)
        return _RESET if kind is FaultKind.RESET_AFTER else response


def _access_key_id(request: Request, params: dict[str, Any]) -> str:
    auth = request.header("authorization")
    if auth.startswith("MNS "):
        return auth[4:].partition(":")[0]
    if "Credential=" in auth:
        return auth.partition("Credential=")[2].partition(",")[0]
    if auth.startswith("SDK-HMAC-SHA256 Access="):  # Huawei's AK/SK signature
        return auth.partition("Access=")[2].partition(",")[0]
    if "AccessKeyId=" in request.raw_query:  # RPC v2: a protocol parameter, not in `params`
        return decode_form(request.raw_query).get("AccessKeyId", "")
    return str(params.get("AccessKeyId", ""))


class _Handler(socketserver.StreamRequestHandler):
    """A minimal HTTP/1.1 keep-alive handler.

    Header parsing is done here rather than by BaseHTTPRequestHandler, whose email-based
    parser costs more CPU than everything else an MNS batch call does on this side.
    """

    server: EmulatorHTTPServer
    timeout = 300  # idle keep-alive connections are closed after this many seconds
    close_connection = False
    command = "GET"

    def handle(self) -> None:
        try:
            while not self.close_connection and self._one_request():
                pass
        except OSError:  # peer reset, idle timeout, or our own shutdown of the socket
            self.close_connection = True
        except Exception:
            # A catch-all on purpose: this thread serves one connection, and everything a
            # client can send is answered above (4xx, or the route's own error); what gets
            # here is an emulator defect. Log it and drop this connection only.
            log.exception("emulator connection failed")
            self.close_connection = True

    def _one_request(self) -> bool:
        line = self.rfile.readline(MAX_LINE + 1)
        while line in (b"\r\n", b"\n"):  # RFC 9112: ignore empty lines before a request
            line = self.rfile.readline(MAX_LINE + 1)
        if not line:
            return False
        if len(line) > MAX_LINE:
            return self._refuse(414, b"Request line too long")
        parts = line.decode("latin-1").split()
        headers = self._read_headers()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or headers is None:
            return self._refuse(400, b"Bad Request")
        self.command, target, version = parts
        connection = headers.get("connection", "").lower()
        self.close_connection = connection == "close" or (
            version == "HTTP/1.0" and connection != "keep-alive"
        )
        body = self._read_body(headers)
        if body is None:
            return False
        self._dispatch(Request(self.command, strip_absolute_uri(target), headers, body))
        return True

    def _read_headers(self) -> dict[str, str] | None:
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS):
            line = self.rfile.readline(MAX_LINE + 1)
            if line in (b"\r\n", b"\n", b""):
                return headers
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep or len(line) > MAX_LINE:
                return None
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        return None

    def _read_body(self, headers: dict[str, str]) -> bytes | None:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            self._refuse(411, b"Content-Length required")
            return None
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            self._refuse(400, b"Bad Content-Length")
            return None
        if not 0 <= length <= MAX_BODY:
            self._refuse(413, b"Request body too large")
            return None
        if headers.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = self.rfile.read(length) if length else b""
        if len(body) < length:  # the client closed mid-body: no request to answer
            self.close_connection = True
            return None
        return body

    def _refuse(self, status: int, text: bytes) -> bool:
        self.close_connection = True
        self._write(Response(status, text, [("Content-Type", "text/plain")]))
        return False

    def _dispatch(self, request: Request) -> None:
        request.client = self.client_address[0]
        try:
            response = self.server.dispatcher.handle(request)
        except Exception:
            log.exception("emulator handler failed for %s %s", request.method, request.target)
            response = Response(500, b"emulator bug", [("Content-Type", "text/plain")], "Bug")
        if response.reset:
            self._reset()
        else:
            self._write(response)

    def _write(self, response: Response) -> None:
        status = HTTPStatus(response.status)
        lines = [
            f"HTTP/1.1 {status.value} {status.phrase}",
            f"Date: {timeutil.http_date()}",
            "Server: receiptd-emulator",
        ]
        lines += [f"{name}: {value}" for name, value in response.headers]
        if status.value not in (204, 304):
            lines.append(f"Content-Length: {len(response.body)}")
        lines.append("Connection: close" if self.close_connection else "Connection: keep-alive")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + response.body if self.command != "HEAD" else head)

    def _reset(self) -> None:
        """Drop the connection with a TCP RST and no answer (SO_LINGER 0, then a real close)."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()
        self.wfile.close()
        self.connection.close()


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """socketserver's hook for what escapes a request (a thread that cannot start, say):
        logged, that connection dropped, the server goes on serving."""
        log.exception("emulator could not serve a connection from %s", client_address)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Unblock threads waiting on idle keep-alive connections (shutdown)."""
        with self._conn_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by its handler
                connection.shutdown(socket.SHUT_RDWR)


class ServerThread:
    """Runs an EmulatorHTTPServer in a background thread; `start` returns once listening."""

    def __init__(self, host: str, port: int, dispatcher: Dispatcher) -> None:
        self.server = EmulatorHTTPServer((host, port), dispatcher)  # bound and listening here
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="emulator-http",
            daemon=True,
        )
        self.started_at = dt.datetime.now(dt.UTC)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        # Order: stop accepting, close the listening socket, then unblock connection threads.
        if self._thread.is_alive():
            self.server.shutdown()  # blocks until serve_forever returns: only if it runs
        self.server.server_close()
        self.server.close_connections()
        self._thread.join(timeout=5)
