"""The emulator's request dispatcher (receiptd_emulator.server.Dispatcher): calls, faults,
limits."""

from __future__ import annotations

from receiptd_emulator import FaultSpec
from receiptd_emulator.calls import CallLog
from receiptd_emulator.faults import Faults, QpsLimiter
from receiptd_emulator.http_types import Request, Response
from receiptd_emulator.router import Router, path_route
from receiptd_emulator.server import Dispatcher


def _dispatcher() -> tuple[Dispatcher, Faults, QpsLimiter, CallLog]:
    def ok(request: Request, api: str) -> Response:
        return Response(200, b"ok")

    def fault(kind: object, request: Request, api: str) -> Response:
        return Response(503, b"", outcome=f"fault:{kind}")

    router = Router()
    router.add(path_route("Ping", "dysms", "GET", "/ping", ok, fault))
    faults, limiter, calls = Faults(), QpsLimiter(), CallLog()
    return Dispatcher(router, faults, limiter, calls), faults, limiter, calls


def test_dispatcher_records_calls_and_applies_faults_and_limits() -> None:
    dispatcher, faults, limiter, calls = _dispatcher()
    assert dispatcher.handle(Request("GET", "/ping?x=1", {})).status == 200
    assert dispatcher.handle(Request("GET", "/nowhere", {})).status == 404
    (call,) = calls.calls("Ping")
    assert (call.params, call.outcome, call.fault) == ({"x": "1"}, "OK", "none")
    faults.set("dysms", FaultSpec(error_rate=1.0))
    assert dispatcher.handle(Request("GET", "/ping", {})).status == 503
    faults.set("dysms", FaultSpec(reset_rate=1.0, seed=2))
    assert dispatcher.handle(Request("GET", "/ping", {})).reset
    faults.set("dysms", FaultSpec())
    limiter.set_limit("Ping", 1)
    statuses = [dispatcher.handle(Request("GET", "/ping", {})).status for _ in range(3)]
    assert statuses[0] == 200 and 503 in statuses
    seen = [c.fault for c in calls.calls()]
    assert seen[:2] == ["none", "error"]
    assert seen[2] in ("reset_before", "reset_after")
