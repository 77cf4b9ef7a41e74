"""An HTTP listener in a background thread: waitress, bounded by ``receiptd.web.connections``,
answering JSON or bytes with the headers every answer carries. The ops port
(``receiptd.daemon.ops``) and the push port (``receiptd.ingest.push.listener``) both run on it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from waitress import wasyncore

from receiptd.web import connections

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
MAX_REQUEST_BODY = 1024 * 1024  # bytes, the largest body taken; a listener may raise it
_STATUS_TEXT = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    503: "Service Unavailable",
}


def json_response(
    start_response: StartResponse,
    status: int,
    body: Mapping[str, Any],
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    data = json.dumps(body, ensure_ascii=False).encode()
    return send_response(start_response, status, data, "application/json", headers)


def send_response(
    start_response: StartResponse,
    status: int,
    data: bytes,
    content_type: str,
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    start_response(
        f"{status} {_STATUS_TEXT.get(status, 'Error')}",
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
            *(headers or []),
        ],
    )
    return [data]


class HttpServer:
    """waitress in a background thread, bounded by ``limits`` (``receiptd.web.connections``);
    ``close()`` stops it."""

    def __init__(
        self,
        app: Callable[..., Any],
        host: str,
        port: int,
        *,
        limits: connections.Limits,
        name: str,
        threads: int = 4,
        max_body: int = MAX_REQUEST_BODY,
        clock: Callable[[], float] = time.monotonic,
        **options: Any,
    ) -> None:
        """``max_body`` is the largest body taken (bytes; a longer one is answered 413 from
        its head, unread); ``options`` override waitress's settings below (each port has its
        own); ``clock`` times the connection deadlines (tests control it)."""
        settings: dict[str, Any] = {
            "threads": threads,
            "max_request_header_size": 16 * 1024,
            # waitress refuses a Content-Length *at* its bound (``>=``, waitress/parser.py):
            # one more byte makes ``max_body`` itself the largest body taken.
            "max_request_body_size": max_body + 1,
            "clear_untrusted_proxy_headers": True,
            "ident": "receiptd",
        }
        self._server = connections.GuardedServer(
            app, limits, name, clock, host=host, port=port, **{**settings, **options}
        )
        self.failed: BaseException | None = None
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"http-{name}", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        try:
            self._server.run()
        except OSError as exc:
            # close() from another thread can pull a socket from under select(): expected then.
            if not self._closing.is_set():
                self.failed = exc
                raise

    def close(self, timeout: float = 5.0) -> None:
        """Close the listener and every open connection inside the server's own loop thread
        (closing them from here would race its poll()), then stop the worker threads.

        The trigger (the pipe that wakes the loop) leaves the loop with the rest but is closed
        last, from here: a worker finishing an answer pulls it too, and its wake-up can run
        ``close_all`` between this thread queueing it and writing its own byte — closing the
        pipe there made that write fail with EBADF, or land in whatever descriptor reused the
        number."""
        self._closing.set()
        server = self._server
        trigger = server.trigger

        def close_all() -> None:
            for dispatcher in list(server._map.values()):
                if dispatcher is trigger:
                    trigger.del_channel()
                elif dispatcher is server:
                    wasyncore.dispatcher.close(server)  # waitress's close() shuts the trigger
                else:
                    # A channel's handle_close, not the socket's close(): it also closes the
                    # channel's buffers, a temporary file once an answer passed
                    # ``outbuf_overflow`` (a kept-alive connection keeps its last one).
                    dispatcher.handle_close()

        trigger.pull_trigger(close_all)
        self._thread.join(timeout)
        server.task_dispatcher.shutdown(timeout=timeout)
        trigger.close()
