"""The Alibaba Cloud POP gateway in front of Dysmsapi and Dybaseapi (RPC style, JSON answers).

Takes `POST /` with the action in the `x-acs-action` header (V3 signature, SDK 4.x default) or in
an `Action` parameter (RPC V2 signature), verifies the signature, and hands the decoded
parameters to the action's handler. Gateway errors (auth, missing parameters, throttling, faults)
are HTTP 4xx/5xx so the SDK raises; business errors are HTTP 200 with `Code != "OK"` (2017-05-25)
or `ResponseCode != "OK"` (2018-05-01). Actions are registered per API version: an action the
gateway does not serve is `InvalidAction.NotFound`, one it serves in other versions only
`InvalidVersion`. Each site (China, international) has its own gateway.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from receiptd_emulator.credentials import Credential
from receiptd_emulator.faults import FaultKind
from receiptd_emulator.http_types import Request, Response, decode_form
from receiptd_emulator.pop_signing import PopVerifier
from receiptd_emulator.router import Params, Route
from receiptd_emulator.signing import AuthError

API_VERSION = "2017-05-25"
#: Dysmsapi 2018-05-01: SendMessageToGlobe, QueryMessage, ... (the international API).
GLOBE_VERSION = "2018-05-01"
#: Signature/protocol parameters, left out of the call log's params.
PROTOCOL_PARAMS = frozenset(
    {
        "Action",
        "Version",
        "Format",
        "Timestamp",
        "AccessKeyId",
        "Signature",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureNonce",
        "SignatureType",
        "SecurityToken",
        "RegionId",
    }
)


class PopError(Exception):
    """A gateway-level error: the HTTP status is >= 400 and the SDK raises."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code, message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class PopCall:
    action: str
    params: Mapping[str, str]
    credential: Credential


ActionHandler = Callable[[PopCall], dict[str, Any]]


def business_error(code: str, message: str) -> dict[str, Any]:
    """A business error: HTTP 200 with `Code != "OK"` (the SDK returns it, does not raise)."""
    return {"Code": code, "Message": message}


def require(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "")
    if not value:
        raise PopError(400, f"Missing{name}", f"{name} is mandatory for this action.")
    return value


def action_of(request: Request) -> str:
    action = request.header("x-acs-action")
    if action:
        return action
    return decode_form(request.raw_query).get("Action", "")


def decoded_params(request: Request) -> dict[str, str]:
    params = decode_form(request.raw_query)
    if request.body and "x-www-form-urlencoded" in request.header("content-type"):
        params.update(decode_form(request.body.decode("utf-8", "replace")))
    return params


class PopGateway:
    """One gateway; each API group (dysms, dybase) gets its own route for faults and limits."""

    def __init__(self, verifier: PopVerifier) -> None:
        self._verifier = verifier
        self._actions: dict[str, dict[str, tuple[str, ActionHandler]]] = {}

    def register(
        self,
        action: str,
        group: str,
        handler: ActionHandler,
        versions: tuple[str, ...] = (API_VERSION,),
    ) -> None:
        for version in versions:
            self._actions.setdefault(action, {})[version] = (group, handler)

    def route(self, group: str, *, fallback: bool = False) -> Route:
        """Requests for `group`'s actions; with `fallback`, also every unknown action."""

        def matches(request: Request) -> bool:
            if request.path != "/" or request.method not in ("POST", "GET"):
                return False
            action = action_of(request)
            if not action:
                return False
            entry = self._actions.get(action)
            return next(iter(entry.values()))[0] == group if entry else fallback

        return Route(
            f"pop-{group}", group, matches, self.classify, self.handle, self.fault_response
        )

    def classify(self, request: Request) -> tuple[str, Params]:
        params = decoded_params(request)
        business: Params = {k: v for k, v in params.items() if k not in PROTOCOL_PARAMS}
        return action_of(request), business

    def handle(self, request: Request, api: str) -> Response:
        try:
            params = decoded_params(request)
            credential = self._verifier.verify(request, params)
            versions = self._actions.get(api)
            if versions is None:
                raise PopError(
                    404,
                    "InvalidAction.NotFound",
                    "Specified api is not found, please check your url and method.",
                )
            version = request.header("x-acs-version") or params.get("Version", "")
            entry = versions.get(version)
            if entry is None:
                raise PopError(400, "InvalidVersion", "Specified parameter Version is not valid.")
            body = entry[1](PopCall(api, params, credential))
        except (AuthError, PopError) as error:
            return self.error(request, error.status, error.code, error.message)
        return self._json(request, 200, body, str(body.get("Code", body.get("ResponseCode", "OK"))))

    def fault_response(self, kind: FaultKind, request: Request, api: str) -> Response:
        if kind is FaultKind.THROTTLE:
            return self.error(
                request, 400, "Throttling.User", "Request was denied due to user flow control."
            )
        return self.error(
            request,
            503,
            "ServiceUnavailable",
            "The request has failed due to a temporary failure of the server.",
        )

    def error(self, request: Request, status: int, code: str, message: str) -> Response:
        host = request.host or "dysmsapi.aliyuncs.com"
        body = {
            "Code": code,
            "Message": message,
            "HostId": host,
            "Recommend": f"https://api.aliyun.com/troubleshoot?q={code}&product=Dysmsapi",
        }
        return self._json(request, status, body, code)

    @staticmethod
    def _json(request: Request, status: int, body: dict[str, Any], outcome: str) -> Response:
        request_id = str(uuid.uuid4()).upper()
        payload = json.dumps({"RequestId": request_id, **body}, ensure_ascii=False).encode()
        headers = [
            ("Content-Type", "application/json;charset=utf-8"),
            ("x-acs-request-id", request_id),
        ]
        return Response(status, payload, headers, outcome=outcome)
