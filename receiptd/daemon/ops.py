"""The operations endpoint: /healthz, /readyz, /metrics, /openapi.json and the optional send API
(status of a send, registration of sends, the registry's summary and counts; docs/api.md).

A small WSGI app served by waitress (``receiptd.web.server``: bounded worker threads, body and
header limits, and the connection bounds of ``receiptd.web.connections``). Every answer is
JSON or Prometheus text; bad requests get a clean 4xx. :data:`ROUTES` is what it answers, and
``receiptd/web/openapi.json`` documents each (tests/unit/web/test_openapi.py compares them).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from receiptd import domain, metrics, ports
from receiptd.clock import utc_now
from receiptd.config.values import ACCOUNT_ID
from receiptd.daemon import summary as _summary
from receiptd.ingest import registration
from receiptd.logs import get_logger
from receiptd.web import connections
from receiptd.web.server import HttpServer, StartResponse, json_response, send_response

log = get_logger(__name__)

Check = Callable[[], tuple[bool, str]]
# (BizId or MessageId, account, which of the two) → rows
SendLookup = Callable[[str, str | None, domain.SendKey | None], list[dict[str, Any]]]
SendRegistrar = Callable[[list[ports.NewSend]], int]
SummaryReader = Callable[[], ports.StatusSummary]

MAX_BIZ_ID = 64
MAX_REGISTRATION_BODY = 1024 * 1024  # bytes; about 5,000 sends per request
MAX_REGISTRATION_SENDS = 5000
# The ops port is scraped and probed, never public: the same bounds, fewer connections.
OPS_LIMITS = connections.Limits(max_connections=100)
# Path (OpenAPI template) → the methods it answers; every GET answers HEAD too.
ROUTES: Mapping[str, tuple[str, ...]] = {
    "/healthz": ("GET",),
    "/readyz": ("GET",),
    "/metrics": ("GET",),
    "/openapi.json": ("GET",),
    "/v1/sends": ("POST",),
    "/v1/sends/{biz_id}": ("GET",),
    "/v1/status": ("GET",),
    "/v1/stats": ("GET",),
}
SEND_PATH = "/v1/sends/"  # the prefix of /v1/sends/{biz_id}
OPENAPI = resources.files("receiptd.web").joinpath("openapi.json").read_bytes()


@dataclass(frozen=True)
class Probes:
    """Named checks: liveness fails when any liveness check fails; same for readiness.
    ``roles`` maps each role the process runs to the readiness check it stands on (/readyz
    lists them)."""

    liveness: Mapping[str, Check]
    readiness: Mapping[str, Check]
    roles: Mapping[str, str] = field(default_factory=dict)


class OpsApp:
    """The WSGI application."""

    def __init__(
        self,
        probes: Probes,
        status_token: str | None = None,
        lookup: SendLookup | None = None,
        show_phone_numbers: bool = False,
        register: SendRegistrar | None = None,
        accounts: Collection[tuple[str, str]] | None = None,
        summary: SummaryReader | None = None,
    ) -> None:
        """``accounts``: the (provider, account) pairs a registered send may name (None:
        any well-formed id); ``summary``: what ``GET /v1/status`` reports (off without)."""
        self._probes = probes
        self._token = status_token.encode() if status_token else None
        self._lookup = lookup
        self._register = register
        self._accounts = accounts
        self._summary = summary
        self._show_phones = show_phone_numbers

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        route = route_of(path)
        if route is None and method in ("GET", "HEAD", "POST"):
            return json_response(start_response, 404, {"error": "not found"})
        # A method no path takes (CONNECT, OPTIONS *, ...) is refused wherever it points.
        methods = ROUTES[route] if route else ("GET", "POST")
        if method not in methods and not (method == "HEAD" and "GET" in methods):
            allow = ", ".join((*methods, "HEAD") if "GET" in methods else methods)
            return json_response(
                start_response, 405, {"error": "method not allowed"}, [("Allow", allow)]
            )
        assert route is not None  # answered 404 or 405 above otherwise
        if method == "POST":
            return self._register_sends(environ, start_response)
        if _declared_body(environ) > 0:
            return json_response(start_response, 413, {"error": "GET requests carry no body"})
        return self._get(route, environ, start_response)

    def _get(
        self, route: str, environ: dict[str, Any], start_response: StartResponse
    ) -> list[bytes]:
        if route in ("/healthz", "/readyz"):
            ready = route == "/readyz"
            probes = self._probes.readiness if ready else self._probes.liveness
            return self._probe(start_response, probes)
        if route == "/metrics":
            # receiptd_ready as of this scrape: a supervisor that never asks /readyz (systemd)
            # would otherwise leave the gauge at its start-up 0 (the ReceiptdNotReady alert).
            self._readiness()
            return send_response(
                start_response, 200, generate_latest(metrics.REGISTRY), CONTENT_TYPE_LATEST
            )
        if route == "/openapi.json":
            return send_response(start_response, 200, OPENAPI, "application/json")
        if route == "/v1/status":
            return self._summary_answer(environ, start_response, _summary.report)
        if route == "/v1/stats":
            return self._summary_answer(environ, start_response, _summary.stats)
        biz_id = str(environ.get("PATH_INFO", "")).removeprefix(SEND_PATH)
        return self._send_status(environ, start_response, biz_id)

    def _readiness(self) -> tuple[bool, dict[str, tuple[bool, str]]]:
        """Run the readiness checks and set ``receiptd_ready`` from them."""
        results = {name: run_check(check) for name, check in self._probes.readiness.items()}
        ok = all(passed for passed, _ in results.values())
        metrics.READY.set(1 if ok else 0)
        return ok, results

    def _probe(self, start_response: StartResponse, checks: Mapping[str, Check]) -> list[bytes]:
        if checks is self._probes.readiness:
            ok, results = self._readiness()
        else:
            results = {name: run_check(check) for name, check in checks.items()}
            ok = all(passed for passed, _ in results.values())
        body: dict[str, Any] = {
            "ok": ok,
            "checks": {n: {"ok": p, "detail": d} for n, (p, d) in results.items()},
        }
        if checks is self._probes.readiness:
            body["roles"] = {
                role: {"ok": results[check][0], "detail": results[check][1]}
                for role, check in self._probes.roles.items()
            }
        return json_response(start_response, 200 if ok else 503, body)

    def _send_status(
        self, environ: dict[str, Any], start_response: StartResponse, biz_id: str
    ) -> list[bytes]:
        refused = self._refuse(environ, start_response, self._lookup)
        if refused is not None:
            return refused
        assert self._lookup is not None  # _refuse answered 404 otherwise
        if not biz_id or len(biz_id) > MAX_BIZ_ID or "/" in biz_id:
            return json_response(start_response, 400, {"error": "invalid biz_id"})
        try:
            account = query_account(environ)
            key = query_key(environ)
        except ValueError as exc:
            return json_response(start_response, 400, {"error": str(exc)})
        try:
            rows = self._lookup(biz_id, account, key)
        except Exception as exc:  # a database error is the server's problem, reported as 503
            log.warning("status_lookup_failed", error=str(exc))
            return json_response(start_response, 503, {"error": "database unavailable"})
        if not rows:
            return json_response(start_response, 404, {"error": "unknown biz_id"})
        return json_response(
            start_response, 200, {"biz_id": biz_id, "recipients": [self._public(r) for r in rows]}
        )

    def _summary_answer(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        render: Callable[[ports.StatusSummary, datetime, str | None], dict[str, Any]],
    ) -> list[bytes]:
        """The registry's summary (``GET /v1/status``, as ``receiptd status --json`` prints
        it) or its counts (``GET /v1/stats``), as ``render`` shapes it."""
        refused = self._refuse(environ, start_response, self._summary)
        if refused is not None:
            return refused
        assert self._summary is not None  # _refuse answered 404 otherwise
        try:
            query(environ, ("account",))
            account = query_account(environ)
        except ValueError as exc:
            return json_response(start_response, 400, {"error": str(exc)})
        try:
            summary = self._summary()
        except Exception as exc:  # a database error is the server's problem, reported as 503
            log.warning("status_lookup_failed", error=str(exc))
            return json_response(start_response, 503, {"error": "database unavailable"})
        return json_response(start_response, 200, render(summary, utc_now(), account))

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
            return json_response(start_response, 413, {"error": "body too large"})
        try:
            query(environ, ())
            sends = _parse_registration(environ["wsgi.input"].read(length), self._accounts)
        except ValueError as exc:
            return json_response(start_response, 400, {"error": str(exc)})
        try:
            inserted = self._register(sends)
        except Exception as exc:  # a database error is the server's problem, reported as 503
            log.warning("registration_failed", error=str(exc))
            return json_response(start_response, 503, {"error": "database unavailable"})
        return json_response(start_response, 200, {"received": len(sends), "registered": inserted})

    def _refuse(
        self, environ: dict[str, Any], start_response: StartResponse, handler: object
    ) -> list[bytes] | None:
        """The answer for a /v1 request that may not proceed, or None when it may.

        Off (404) unless a token and a handler are configured; 401 without the right token.
        """
        if self._token is None or handler is None:
            return json_response(start_response, 404, {"error": "not found"})
        if not self._authorized(environ.get("HTTP_AUTHORIZATION", "")):
            return json_response(
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
            "account": row["account"],
            "matched_by": row.get("matched_by", domain.SendKey.BIZ_ID.value),
            "phone_number": phone if self._show_phones else domain.mask_phone(phone),
            "status": row["status"],
            "settled_by": row["settled_by"],
            "err_code": row["err_code"],
            "sent_at": _iso(row["sent_at"]),
            "settled_at": _iso(row["settled_at"]),
            "out_id": row["out_id"],
            "task_id": row.get("task_id"),
        }


def route_of(path: str) -> str | None:
    """The :data:`ROUTES` entry a request path is answered by (None: not found)."""
    if path in ROUTES:
        return path
    return "/v1/sends/{biz_id}" if path.startswith(SEND_PATH) else None


def query(environ: Mapping[str, Any], known: Collection[str]) -> dict[str, list[str]]:
    """The query parameters of a request, or ValueError naming one not in ``known``."""
    given = parse_qs(str(environ.get("QUERY_STRING", "")), keep_blank_values=True)
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ValueError(f"unknown query parameter(s) {', '.join(map(repr, unknown))}")
    return given


def query_account(environ: Mapping[str, Any]) -> str | None:
    """The ``?account=ID`` of a request (None without one), or ValueError."""
    given = query(environ, ("account", "matched_by")).get("account")
    if given is None:
        return None
    if len(given) != 1 or not ACCOUNT_ID.fullmatch(given[0]):
        raise ValueError("account must be one account id (1 to 32 of a-z 0-9 _)")
    return given[0]


def query_key(environ: Mapping[str, Any]) -> domain.SendKey | None:
    """The ``?matched_by=biz_id|message_id`` of a request (None without one), or ValueError:
    ``/v1/sends/{id}`` finds a send by its BizId or its MessageId; this narrows to one."""
    given = query(environ, ("account", "matched_by")).get("matched_by")
    if given is None:
        return None
    keys = [k.value for k in domain.SendKey]
    if len(given) != 1 or given[0] not in keys:
        raise ValueError(f"matched_by must be one of {keys}")
    return domain.SendKey(given[0])


def _parse_registration(
    body: bytes, accounts: Collection[tuple[str, str]] | None
) -> list[ports.NewSend]:
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
            _check_fields(record)
            sends.append(registration.new_send(record, accounts))
        except ValueError as exc:
            raise ValueError(f"item {index}: {exc}") from None
    return sends


def _check_fields(record: Mapping[str, Any]) -> None:
    """ValueError unless every known field is a string (or null: absent): JSON's other types
    are not what the import format writes (its lengths: ``registration.new_send``)."""
    for name in registration.COLUMNS:
        value = record.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} must be a string")


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


class OpsServer(HttpServer):
    """The ops port: scraped and probed, never public (fewer connections than the push port),
    bodies up to a registration's size."""

    def __init__(
        self,
        app: Callable[..., Any],
        host: str,
        port: int,
        threads: int = 4,
        limits: connections.Limits = OPS_LIMITS,
        **options: Any,
    ) -> None:
        options.setdefault("max_body", MAX_REGISTRATION_BODY)
        super().__init__(app, host, port, limits=limits, name="ops", threads=threads, **options)
