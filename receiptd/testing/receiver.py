"""A real webhook receiver on a local port, for the tests, the demo and the benchmark.

It verifies every request with the ``standardwebhooks`` verifier (what a receiving
application runs), de-duplicates by ``webhook-id`` the way docs/webhooks.md tells receivers
to, and can misbehave on purpose: answer a status other than 2xx, answer slowly, or go away
entirely (``stop``; ``start`` again on the same port).

While stopped, the port stays bound by a socket that does not listen: a sender's connections
are refused, as by a host where nothing listens, and no other socket can take the number
meanwhile (an outgoing connection's ephemeral port, say, which made ``start`` fail with
"Address already in use").
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import standardwebhooks


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        return None  # a sender killed mid-request resets its connection: expected here


class Receiver:
    """``with Receiver(secret) as r: ... r.url``; counters are safe to read from any thread."""

    def __init__(self, secret: str, port: int = 0, status: int = 200, delay: float = 0.0) -> None:
        self.secret = secret
        self.status = status
        self.delay = delay
        self._verifier = standardwebhooks.Webhook(secret)
        self._lock = threading.Lock()
        self.events: dict[str, dict[str, Any]] = {}  # webhook-id -> payload (first seen)
        self.deliveries: Counter[str] = Counter()  # webhook-id -> requests that verified
        self.rejected = 0  # requests whose signature did not verify
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._reserved: socket.socket | None = None  # the port's socket while stopped

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Receiver:
        server = _QuietServer(("127.0.0.1", self._port), self._handler(), bind_and_activate=False)
        if self._reserved is None:
            server.server_bind()
        else:  # the port kept since stop(): listen on that very socket
            server.socket.close()
            server.socket, self._reserved = self._reserved, None
            server.server_address = server.socket.getsockname()
        server.server_activate()
        server.daemon_threads = True
        self._port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering; the port stays reserved (bound, not listening) for ``start``."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            self._reserved = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._reserved.bind(("127.0.0.1", self._port))

    def close(self) -> None:
        """Stop, and give the port up."""
        self.stop()
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}/hooks"

    # --- what arrived ------------------------------------------------------------------------

    def by_type(self) -> dict[str, int]:
        with self._lock:
            return dict(Counter(e["type"] for e in self.events.values()))

    def unique(self) -> int:
        with self._lock:
            return len(self.events)

    def duplicates(self) -> int:
        with self._lock:
            return sum(n - 1 for n in self.deliveries.values())

    def wait_for(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.unique() >= count:
                return True
            time.sleep(0.02)
        return self.unique() >= count

    # --- the handler -------------------------------------------------------------------------

    def _accept(self, body: bytes, headers: dict[str, str]) -> int:
        with self._lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                time.sleep(self.delay)
            try:
                payload = self._verifier.verify(body, headers)
            except standardwebhooks.WebhookVerificationError:
                with self._lock:
                    self.rejected += 1
                return 400
            status = self.status
            if 200 <= status < 300:
                with self._lock:
                    event_id = headers["webhook-id"]
                    self.deliveries[event_id] += 1
                    self.events.setdefault(event_id, payload)
            return status
        finally:
            with self._lock:
                self.in_flight -= 1

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do
            # Headers and body are two writes: without TCP_NODELAY the body waits for the
            # client's delayed ACK (~40 ms per request on Linux).
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver._accept(body, headers)
                reply = json.dumps({"status": status}).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        return Handler
