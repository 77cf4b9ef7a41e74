"""The operations endpoint: /healthz, /readyz, /metrics and the optional status lookup.

A small WSGI app served by waitress (bounded worker threads, channel timeouts, body and
header limits). Every answer is JSON or Prometheus text; bad requests get a clean 4xx.
"""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from waitress.server import create_server

from receiptd import domain, metrics, ports, registration
from receiptd.logs import get_logger

log = get_logger(__name__)

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
Check = Callable[[], tuple[bool, str]]
SendLookup = Callable[[str], list[dict[str, Any]]]
SendRegistrar = Callable[[list[ports.NewSend]], int]

MAX_BIZ_ID = 64
MAX_REGISTRATION_BODY = 1024 * 1024  # bytes; about 5,000 sends per request
MAX_REGISTRATION_SENDS = 5000
_STATUS_TEXT = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Probes:
    """Named checks: liveness fails when any liveness check fails; same for readiness."""

    liveness: Mapping[str, Check]
    readiness: Mapping[str, Check]


class OpsApp:
    """The WSGI application."""

    def __init__(
        self,
        probes: Probes,
        status_token: str | None = None,
        lookup: SendLookup | None = None,
        show_phone_numbers: bool = False,
        register: SendRegistrar | None = None,
    ) -> None:
        self._probes = probes
        self._token = status_token.encode() if status_token else None
        self._lookup = lookup
        self._register = register
        self._show_phones = show_phone_numbers

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        if path == "/v1/sends" and method == "POST":
            return self._register_sends(environ, start_response)
        if method not in ("GET", "HEAD"):
            return _json(
                start_response, 405, {"error": "method not allowed"}, [("Allow", "GET, HEAD")]
            )
        if _declared_body(environ) > 0:
            return _json(start_response, 413, {"error": "GET requests carry no body"})
        if path == "/healthz":
            return self._probe(start_response, self._probes.liveness)
        if path == "/readyz":
            code_body = self._probe(start_response, self._probes.readiness)
            return code_body
        if path == "/metrics":
            return _send(
                start_response, 200, generate_latest(metrics.REGISTRY), CONTENT_TYPE_LATEST
            )
        if path.startswith("/v1/sends/"):
            return self._send_status(environ, start_response, path.removeprefix("/v1/sends/"))
        return _json(start_response, 404, {"error": "not found"})

    def _probe(self, start_response: StartResponse, checks: Mapping[str, Check]) -> list[bytes]:
        results = {name: run_check(check) for name, check in checks.items()}
        ok = all(passed for passed, _ in results.values())
        if checks is self._probes.readiness:
            metrics.READY.set(1 if ok else 0)
        body = {"ok": ok, "checks": {n: {"ok": p, "detail": d} for n, (p, d) in results.items()}}
        return _json(start_response, 200 if ok else 503, body)

    def _send_status(
        self, environ: dict[str, Any], start_response: StartResponse, biz_id: str
    ) -> list[bytes]:
        refused = self._refuse(environ, start_response, self._lookup)
        if refused is not None:
            return refused
        assert self._lookup is not None  # _refuse answered 404 otherwise
        if not biz_id or len(biz_id) > MAX_BIZ_ID or "/" in biz_id:
            return _json(start_response, 400, {"error": "invalid biz_id"})
        try:
            rows = self._lookup(biz_id)
        except Exception as exc:  # a database error is the server's problem, reported as 503
            log.warning("status_lookup_failed", error=str(exc))
            return _json(start_response, 503, {"error": "database unavailable"})
        if not rows:
            return _json(start_response, 404, {"error": "unknown biz_id"})
        return _json(
            start_response, 200, {"biz_id": biz_id, "recipients": [self._public(r) for r in rows]}
        )

    def _register_sends(
        self, environ: dict[str, Any], start_response: StartResponse
    ) -> list[bytes]:
        """Register sends made by other systems: a JSON array of import records."""
        refused = self._refuse(environ, start_response, self._register)
        if refused is not None:
            return refused
        assert self._register is not None  # _refuse answered 404 otherwise
        length = _declared_body(environ)
        if length > MAX_REGISTRATION_BODY:
            return _json(start_response, 413, {"error": "body too large"})
        try:
            sends = _parse_registration(environ["wsgi.input"].read(length))
        except ValueError as exc:
            return _json(start_response, 400, {"error": str(exc)})
        try:
            inserted = self._register(sends)
        except Exception as exc:  # a database error is the server's problem, reported as 503
            log.warning("registration_failed", error=str(exc))
            return _json(start_response, 503, {"error": "database unavailable"})
        return _json(start_response, 200, {"received": len(sends), "registered": inserted})

    def _refuse(
        self, environ: dict[str, Any], start_response: StartResponse, handler: object
    ) -> list[bytes] | None:
        """The answer for a /v1 request that may not proceed, or None when it may.

        Off (404) unless a token and a handler are configured; 401 without the right token.
        """
        if self._token is None or handler is None:
            return _json(start_response, 404, {"error": "not found"})
        if not self._authorized(environ.get("HTTP_AUTHORIZATION", "")):
            return _json(
                start_response,
                401,
                {"error": "missing or wrong bearer token"},
                [("WWW-Authenticate", 'Bearer realm="receiptd"')],
            )
        return None

    def _authorized(self, header: str) -> bool:
        scheme, _, presented = header.partition(" ")
        assert self._token is not None
        # Constant-time comparison: the token never leaks through response timing.
        return scheme.lower() == "bearer" and hmac.compare_digest(
            presented.strip().encode(), self._token
        )

    def _public(self, row: Mapping[str, Any]) -> dict[str, Any]:
        phone = str(row["phone_number"])
        return {
            "provider": row["provider"],
            "phone_number": phone if self._show_phones else domain.mask_phone(phone),
            "status": row["status"],
            "settled_by": row["settled_by"],
            "err_code": row["err_code"],
            "sent_at": _iso(row["sent_at"]),
            "settled_at": _iso(row["settled_at"]),
            "out_id": row["out_id"],
        }


def _parse_registration(body: bytes) -> list[ports.NewSend]:
    try:
        records = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError("body is not JSON") from None
    if not isinstance(records, list) or not records:
        raise ValueError("body must be a non-empty JSON array of sends")
    if len(records) > MAX_REGISTRATION_SENDS:
        raise ValueError(f"at most {MAX_REGISTRATION_SENDS} sends per request")
    sends = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise ValueError(f"item {index}: must be an object")
        try:
            sends.append(registration.new_send(record))
        except ValueError as exc:
            raise ValueError(f"item {index}: {exc}") from None
    return sends


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def run_check(check: Check) -> tuple[bool, str]:
    try:
        return check()
    except Exception as exc:  # a probe that raises is a failed probe, never a 500
        return False, f"{type(exc).__name__}: {exc}"


def _declared_body(environ: Mapping[str, Any]) -> int:
    try:
        return int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 1


def _json(
    start_response: StartResponse,
    status: int,
    body: Mapping[str, Any],
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    data = json.dumps(body, ensure_ascii=False).encode()
    return _send(start_response, status, data, "application/json", headers)


def _send(
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


class OpsServer:
    """waitress in a background thread; ``close()`` stops it."""

    def __init__(
        self, app: Callable[..., Any], host: str, port: int, threads: int = 4, **options: Any
    ) -> None:
        """``options`` override waitress's settings below (the push listener has its own)."""
        settings: dict[str, Any] = {
            "threads": threads,
            "channel_timeout": 30,
            "max_request_header_size": 16 * 1024,
            "max_request_body_size": MAX_REGISTRATION_BODY,
            "connection_limit": 100,
            "clear_untrusted_proxy_headers": True,
            "ident": "receiptd",
        }
        self._server = create_server(app, host=host, port=port, **{**settings, **options})
        self.failed: BaseException | None = None
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="http", daemon=True)

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
        """Stop the worker threads (a request being served is finished), then close the
        listener and every open connection inside the server's own loop thread (closing them
        from here would race its select())."""
        self._closing.set()
        server = self._server
        # Workers first: each pulls the trigger after a response, and a pull after close_all
        # closed it writes into a closed descriptor, or into one that reused its number.
        server.task_dispatcher.shutdown(timeout=timeout)

        def close_all() -> None:
            for dispatcher in list(server._map.values()):
                dispatcher.close()

        # pull_trigger(thunk) appends the thunk, then writes the wake-up byte; a loop already
        # awake can run close_all, closing the trigger, in between. The loop runs thunks only
        # under the trigger's lock: hold it for both.
        trigger = server.trigger
        with trigger.lock:
            trigger.thunks.append(close_all)
            trigger._physical_pull()
        self._thread.join(timeout)
