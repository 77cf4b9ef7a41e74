"""The control API: the Emulator's Python controls as JSON over HTTP under `/_emulator/`.

Unauthenticated (the emulator is a local test tool), never faulted, throttled or recorded.
Endpoints about one account's queues, sends, receipts, pushes or calls take an optional
``account`` (a JSON field, or a query parameter for GET); without it, the default account.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, fields
from typing import TYPE_CHECKING, Any

from receiptd_emulator.faults import FaultKind, FaultSpec
from receiptd_emulator.globe_provider import SeedGlobeSend
from receiptd_emulator.http_types import Request, Response, decode_form
from receiptd_emulator.mns_queue import MnsError
from receiptd_emulator.provider import SeedSend
from receiptd_emulator.push import PushSpec
from receiptd_emulator.router import CONTROL_PREFIX, Params, Route

if TYPE_CHECKING:
    from receiptd_emulator.emulator import Emulator

Body = dict[str, Any]
Endpoint = Callable[["Emulator", Body], Any]


def _seed_values(item: Mapping[str, Any], kind: type[Any]) -> dict[str, Any]:
    allowed = {f.name for f in fields(kind)}
    unknown = set(item) - allowed
    if unknown:
        raise ValueError(f"unknown seed fields: {sorted(unknown)}")
    values = dict(item)
    if isinstance(values.get("send_time"), str):
        values["send_time"] = dt.datetime.fromisoformat(values["send_time"])
    return values


def _seed(item: Mapping[str, Any]) -> SeedSend:
    return SeedSend(**_seed_values(item, SeedSend))


def _seed_globe(item: Mapping[str, Any]) -> SeedGlobeSend:
    """``{to, message, sender, task_id, send_time, outcome, err_code, receipt,
    receipt_delay, message_id, template_code}``."""
    return SeedGlobeSend(**_seed_values(item, SeedGlobeSend))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _reset_calls(emu: Emulator, body: Body) -> Body:
    emu.reset_calls()
    return {}


def _set_faults(emu: Emulator, body: Body) -> Body:
    group = body.pop("group", "all")
    emu.set_faults(group, FaultSpec(**body))
    return {}


def _set_qps_limit(emu: Emulator, body: Body) -> Body:
    emu.set_qps_limit(body["api"], body.get("qps"))
    return {}


def _set_push(emu: Emulator, body: Body) -> Body:
    """``{"type": "SmsReport", "url": ..., "batch": 100, "schedule": "long", ...}``;
    ``"url": null`` turns push mode off for that type."""
    kind = body.pop("type")
    account = body.pop("account", None)
    emu.set_push(kind, None if body.get("url") is None else PushSpec(**body), account)
    return {}


def _push_elements(emu: Emulator, body: Body) -> Body:
    emu.push_elements(body["type"], body["elements"], body.get("account"))
    return {}


def _add_account(emu: Emulator, body: Body) -> Body:
    """``{"name": "brand_b", "uid": "...", "push": {"SmsReport": {"url": ...}},
    "site": "cn"}``."""
    unknown = set(body) - {"name", "uid", "push", "site"}
    if unknown:
        raise ValueError(f"unknown account fields: {sorted(unknown)}")
    push = {kind: PushSpec(**spec) for kind, spec in body.get("push", {}).items()}
    site = body.get("site", "cn")
    return emu.add_account(body["name"], body.get("uid"), push_specs=push, site=site).as_dict()


def _set_globe_qps(emu: Emulator, body: Body) -> Body:
    emu.set_globe_qps(body["api"], body.get("qps"))
    return {}


def _calls(emu: Emulator, body: Body) -> Body:
    calls = emu.calls(body.get("api"), body.get("account"))
    return {"calls": [c.as_dict() for c in calls]}


def _set_long_poll_cap(emu: Emulator, body: Body) -> Body:
    unknown = set(body) - {"per_queue", "per_key"}
    if unknown:
        raise ValueError(f"unknown long-poll cap fields: {sorted(unknown)}")
    emu.set_long_poll_cap(int(body.get("per_queue", 0)), int(body.get("per_key", 0)))
    return emu.long_polls()


ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    ("GET", "info"): lambda emu, b: emu.info.as_dict(),
    ("GET", "accounts"): lambda emu, b: {"accounts": [a.as_dict() for a in emu.info.accounts]},
    ("POST", "accounts"): _add_account,
    ("POST", "enqueue"): lambda emu, b: {
        "message_id": emu.enqueue(b["queue"], b["body"], float(b.get("delay", 0)), b.get("account"))
    },
    ("POST", "enqueue_report"): lambda emu, b: {
        "message_id": emu.enqueue_report(b["fields"], float(b.get("delay", 0)), b.get("account"))
    },
    ("POST", "enqueue_up"): lambda emu, b: {
        "message_id": emu.enqueue_up(b["fields"], float(b.get("delay", 0)), b.get("account"))
    },
    ("POST", "inject_malformed"): lambda emu, b: {
        "body": emu.inject_malformed(b.get("queue", "report"), b.get("body"), b.get("account"))
    },
    ("POST", "seed_sends"): lambda emu, b: {
        "biz_ids": emu.seed_sends([_seed(item) for item in b["sends"]], b.get("account"))
    },
    ("GET", "records"): lambda emu, b: {
        "records": [asdict(r) for r in emu.records(b.get("account"))]
    },
    ("POST", "seed_globe_sends"): lambda emu, b: {
        "message_ids": emu.seed_globe_sends(
            [_seed_globe(item) for item in b["sends"]], b.get("account")
        )
    },
    ("GET", "globe_records"): lambda emu, b: {
        "records": [asdict(r) for r in emu.globe_records(b.get("account"))]
    },
    ("POST", "enqueue_globe_report"): lambda emu, b: {
        "message_id": emu.enqueue_globe_report(
            b["fields"], float(b.get("delay", 0)), b.get("account")
        )
    },
    ("POST", "globe_qps"): _set_globe_qps,
    ("GET", "queue_depth"): lambda emu, b: emu.queue_depth(
        b.get("queue", "report"), b.get("account")
    ),
    ("GET", "calls"): _calls,
    ("POST", "reset_calls"): _reset_calls,
    ("POST", "faults"): _set_faults,
    ("POST", "expire_tokens"): lambda emu, b: {"expired": emu.expire_tokens()},
    ("POST", "qps_limit"): _set_qps_limit,
    ("POST", "push"): _set_push,
    ("GET", "push_stats"): lambda emu, b: emu.push_stats(b.get("account")),
    ("POST", "push_elements"): _push_elements,
    ("GET", "long_polls"): lambda emu, b: emu.long_polls(b.get("site", "cn")),
    ("POST", "long_polls"): _set_long_poll_cap,
}


def _json(status: int, payload: Any) -> Response:
    body = json.dumps(_jsonable(payload), ensure_ascii=False).encode()
    return Response(status, body, [("Content-Type", "application/json;charset=utf-8")])


def _body(request: Request) -> Body:
    if request.method == "GET":
        return dict(decode_form(request.raw_query))
    if not request.body:
        return {}
    parsed = json.loads(request.body)
    if not isinstance(parsed, dict):
        raise ValueError("the request body must be a JSON object")
    return parsed


def route(emulator: Emulator) -> Route:
    def matches(request: Request) -> bool:
        return request.path.startswith(CONTROL_PREFIX)

    def classify(request: Request) -> tuple[str, Params]:
        return "control." + request.path.removeprefix(CONTROL_PREFIX), {}

    def handle(request: Request, api: str) -> Response:
        endpoint = ENDPOINTS.get((request.method, request.path.removeprefix(CONTROL_PREFIX)))
        if endpoint is None:
            return _json(404, {"error": f"no control endpoint {request.method} {request.path}"})
        try:
            return _json(200, endpoint(emulator, _body(request)))
        except MnsError as error:
            return _json(404 if error.status == 404 else 400, {"error": error.message})
        except (KeyError, TypeError, ValueError) as error:
            return _json(400, {"error": f"{type(error).__name__}: {error}"})

    def no_faults(kind: FaultKind, request: Request, api: str) -> Response:
        return handle(request, api)

    return Route("control", "control", matches, classify, handle, no_faults, recorded=False)
