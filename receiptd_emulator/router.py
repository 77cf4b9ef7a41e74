"""Maps a request to the API that serves it; every API shares one port.

A `Route` says which requests it takes, how to name the call for the call log and the QPS
limiter, how to answer it, and how its API family reports an injected fault. New providers
(e.g. Huawei KooMessage) plug in with `Router.add` or by replacing the placeholder route named
`"koomessage"` via `Router.replace`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from receiptd_emulator.faults import FaultKind
from receiptd_emulator.http_types import Request, Response

Params = dict[str, object]
Classifier = Callable[[Request], tuple[str, Params]]
Handler = Callable[[Request, str], Response]
FaultResponder = Callable[[FaultKind, Request, str], Response]

#: Path prefix of the control API; never faulted, throttled or recorded.
CONTROL_PREFIX = "/_emulator/"
KOOMESSAGE_PATH = "/v1/aim/send-details"


@dataclass(frozen=True, slots=True)
class Route:
    """One API family's entry point.

    matches: does this route take the request?
    classify: (api name, params) for the call log and QPS limits, e.g. "MNS.ReceiveMessage".
    handle: answer the request (given the api name from `classify`).
    fault_response: the family's answer to an injected ERROR or THROTTLE.
    group: fault group (see `faults.GROUPS`); `recorded=False` keeps it out of the call log.
    """

    name: str
    group: str
    matches: Callable[[Request], bool]
    classify: Classifier
    handle: Handler
    fault_response: FaultResponder
    recorded: bool = True


@dataclass(slots=True)
class Router:
    routes: list[Route] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, route: Route, *, first: bool = False) -> None:
        with self._lock:
            if any(r.name == route.name for r in self.routes):
                raise ValueError(f"route {route.name!r} already exists; use replace()")
            self.routes = [route, *self.routes] if first else [*self.routes, route]

    def replace(self, name: str, route: Route) -> None:
        with self._lock:
            names = [r.name for r in self.routes]
            if name not in names:
                raise KeyError(name)
            routes = list(self.routes)
            routes[names.index(name)] = route
            self.routes = routes

    def resolve(self, request: Request) -> Route | None:
        # Copy-on-write list: reading it needs no lock.
        for route in self.routes:
            if route.matches(request):
                return route
        return None


def path_route(
    name: str, group: str, method: str, path: str, handle: Handler, faults: FaultResponder
) -> Route:
    """A route for one exact method + path, the call named after the route."""

    def matches(request: Request) -> bool:
        return request.method == method and request.path == path

    def classify(request: Request) -> tuple[str, Params]:
        return name, dict(request.raw_params())

    return Route(name, group, matches, classify, handle, faults)


def _koomessage_json(status: int, code: str, message: str) -> Response:
    body = json.dumps({"error_code": code, "error_msg": message}).encode()
    return Response(status, body, [("Content-Type", "application/json;charset=UTF-8")], code)


def _koomessage_placeholder(request: Request, api: str) -> Response:
    return _koomessage_json(501, "KOO.NotImplemented", "KooMessage is not emulated yet")


def _koomessage_faults(kind: FaultKind, request: Request, api: str) -> Response:
    if kind is FaultKind.THROTTLE:
        return _koomessage_json(429, "APIGW.0308", "The throttling threshold has been reached")
    return _koomessage_json(500, "KOO.00000500", "Internal error")


def koomessage_placeholder_route() -> Route:
    """Placeholder for `GET /v1/aim/send-details`; replace it with the real handler."""
    return path_route(
        "koomessage",
        "koomessage",
        "GET",
        KOOMESSAGE_PATH,
        _koomessage_placeholder,
        _koomessage_faults,
    )
