"""Huawei KooMessage ``GET /v1/aim/send-details``, strict, as the Huawei Python SDK calls it.

Authentication: an ``SDK-HMAC-SHA256`` signature (canonical request rebuilt exactly as
``huaweicloudsdkcore/signer/signer.py`` builds it: method, path with a trailing ``/``, sorted
re-encoded query, the signed headers, the payload hash) with ``X-Sdk-Date`` within 15 minutes,
or an ``X-Auth-Token`` the emulator was given. Failures are 401 ``APIGW.0301``.

Every limit of the KooMessage API reference (docs/emulator.md) is enforced (400 ``KOO.00000400``):
field lengths, offset 0..1,000,000, limit 1..100, begin_time/end_time only together, ``...Z`` times,
the last year only; ``offset + limit > 10,000`` answers an empty list (with the real total). Without
a time range the last year is searched; the default limit is 10. Times are inclusive at both ends;
details are listed by send_time, oldest first.

Details live in :class:`receiptd_emulator.koomessage_store.DetailStore`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

from receiptd_emulator.faults import FaultKind
from receiptd_emulator.http_types import Request, Response, split_raw_query
from receiptd_emulator.koomessage_store import TIME_FORMAT, DetailStore
from receiptd_emulator.router import KOOMESSAGE_PATH, Route, path_route
from receiptd_emulator.signing import MAX_CLOCK_SKEW, AuthError

API = "koomessage"
RESULT_CAP = 10_000
DEFAULT_LIMIT = 10
MAX_LENGTH = {"task_id": 36, "tpl_id": 9, "sms_sign": 18, "cust_flag": 64}
MAX_LENGTH.update(begin_time=30, end_time=30)
FILTERS = ("task_id", "tpl_id", "sms_sign", "cust_flag")
_EMPTY_HASH = hashlib.sha256(b"").hexdigest()
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_INTEGER = re.compile(r"-?[0-9]{1,12}")
_AUTH = re.compile(r"SDK-HMAC-SHA256 Access=([^,]+), SignedHeaders=([^,]+), Signature=([0-9a-f]+)")


class KooMessageError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code, message)
        self.status, self.code, self.message = status, code, message


def _bad(message: str) -> KooMessageError:
    return KooMessageError(400, "KOO.00000400", message)


class KooMessageAuth:
    """AK/SK pairs and IAM tokens the emulator accepts."""

    def __init__(
        self,
        keys: Mapping[str, str] | None = None,
        tokens: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = dict(keys or {})
        self.tokens = set(tokens)
        self._clock = clock

    def verify(self, request: Request) -> str:
        """The caller's AK (or ``"token"``), or AuthError 401."""
        token = request.header("x-auth-token")
        if token:
            if not any(hmac.compare_digest(token, t) for t in self.tokens):
                raise _unauthorized("the token is invalid or expired")
            return "token"
        match = _AUTH.fullmatch(request.header("authorization"))
        if match is None:
            raise _unauthorized("no X-Auth-Token and no SDK-HMAC-SHA256 Authorization header")
        access_key, signed, signature = match.groups()
        secret = self.keys.get(access_key)
        if secret is None:
            raise _unauthorized("the access key does not exist")
        self._check_date(request.header("x-sdk-date"))
        names = signed.split(";")
        if not {"host", "x-sdk-date"} <= set(names):
            raise _unauthorized("host and x-sdk-date must be signed")
        expected = sdk_signature(request, names, secret)
        if not hmac.compare_digest(expected, signature):
            raise _unauthorized("verify aksk signature fail")
        return access_key

    def _check_date(self, value: str) -> None:
        try:
            sent = dt.datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        except ValueError:
            raise _unauthorized("X-Sdk-Date is missing or malformed") from None
        if abs(self._clock() - sent.timestamp()) > MAX_CLOCK_SKEW:
            raise _unauthorized("X-Sdk-Date is more than 15 minutes off")


def _unauthorized(reason: str) -> AuthError:
    return AuthError(401, "APIGW.0301", f"Incorrect IAM authentication information: {reason}")


def _encode(text: str) -> str:
    return quote(text, safe="~")


def sdk_signature(request: Request, signed: list[str], secret: str) -> str:
    """``SDK-HMAC-SHA256`` over the canonical request, as huaweicloudsdkcore's Signer builds it."""
    path = "/".join(_encode(part) for part in unquote(request.path).split("/"))
    path = path if path.endswith("/") else path + "/"
    pairs = sorted((unquote(k), unquote(v)) for k, v in split_raw_query(request.raw_query))
    query = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in pairs)
    headers = "".join(f"{name}:{request.header(name).strip()}\n" for name in signed)
    payload = request.header("x-sdk-content-sha256") if request.body else ""
    payload = payload or (hashlib.sha256(request.body).hexdigest() if request.body else _EMPTY_HASH)
    canonical = "\n".join((request.method, path, query, headers, ";".join(signed), payload))
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    string_to_sign = f"SDK-HMAC-SHA256\n{request.header('x-sdk-date')}\n{digest}"
    return hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Params:
    filters: dict[str, str]
    begin: float
    end: float
    offset: int
    limit: int


def parse_params(raw: Mapping[str, str], now: float) -> Params:
    """The query parameters, or KooMessageError 400 naming the first invalid one."""
    values = {k: unquote(v) for k, v in raw.items()}
    for name, limit in MAX_LENGTH.items():
        if len(values.get(name, "")) > limit:
            raise _bad(f"{name} is longer than {limit} characters")
    filters = {k: values[k] for k in FILTERS if values.get(k)}
    offset = _integer(values, "offset", 0, 0, 1_000_000)
    limit = _integer(values, "limit", DEFAULT_LIMIT, 1, 100)
    oldest = _year_before(now)
    begin_text, end_text = values.get("begin_time", ""), values.get("end_time", "")
    if bool(begin_text) != bool(end_text):
        raise _bad("begin_time and end_time must be given together")
    if not begin_text:
        return Params(filters, oldest, float("inf"), offset, limit)
    begin, end = _time(begin_text, "begin_time"), _time(end_text, "end_time")
    if begin > end:
        raise _bad("begin_time must not be after end_time")
    if begin < oldest:
        raise _bad("begin_time must be within the last 1 year")
    return Params(filters, begin, end, offset, limit)


def _integer(values: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = values.get(name)
    if text is None or text == "":
        return default
    if not _INTEGER.fullmatch(text) or not low <= int(text) <= high:
        raise _bad(f"{name} must be an integer from {low} to {high}")
    return int(text)


def _time(text: str, name: str) -> float:
    try:
        if not _TIME.fullmatch(text):  # strptime alone would take "2019-1-2T3:4:5Z"
            raise ValueError(text)
        return dt.datetime.strptime(text, TIME_FORMAT).replace(tzinfo=dt.UTC).timestamp()
    except ValueError:
        raise _bad(f"{name} must look like 2019-10-12T07:20:50Z") from None


def _year_before(now: float) -> float:
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    try:
        return moment.replace(year=moment.year - 1).timestamp()
    except ValueError:  # 29 February
        return moment.replace(year=moment.year - 1, day=28).timestamp()


class KooMessageApi:
    """The send-details API: a route for the emulator's router, over a DetailStore."""

    def __init__(
        self,
        store: DetailStore | None = None,
        auth: KooMessageAuth | None = None,
        clock: Callable[[], float] = time.time,
        stores: Callable[[str], DetailStore] | None = None,
    ) -> None:
        """`stores` maps the caller (its AK, or its IAM token) to the details it may read
        (its own account's); without it every caller reads `store`."""
        self.store = store or DetailStore()
        self.auth = auth or KooMessageAuth(clock=clock)
        self._clock = clock
        self._stores = stores

    def route(self) -> Route:
        return path_route(
            "koomessage", "koomessage", "GET", KOOMESSAGE_PATH, self.handle, self.fault_response
        )

    def handle(self, request: Request, api: str = API) -> Response:
        try:
            caller = self.auth.verify(request)
            params = parse_params(request.raw_params(), self._clock())
        except (AuthError, KooMessageError) as error:
            return error_response(error.status, error.code, error.message)
        if caller == "token":
            caller = request.header("x-auth-token")
        store = self.store if self._stores is None else self._stores(caller)
        # Past the cap the answer is an empty list; the total is still the real one.
        readable = params.limit if params.offset + params.limit <= RESULT_CAP else 0
        page, total = store.page(params.filters, params.begin, params.end, params.offset, readable)
        body = {
            "send_details": [d.as_json() for d in page],
            "page_info": {"offset": params.offset, "limit": params.limit, "total": total},
        }
        return _json(200, body, "OK")

    def fault_response(self, kind: FaultKind, request: Request, api: str) -> Response:
        if kind is FaultKind.THROTTLE:
            return error_response(429, "APIGW.0308", "The throttling threshold has been reached")
        return error_response(500, "KOO.00000500", "Internal error")


def error_response(status: int, code: str, message: str) -> Response:
    """The 4xx/5xx body: ``error_code``, ``error_msg`` and the deprecated ``error_message``."""
    body = {
        "error_code": code,
        "error_msg": message,
        "error_message": {"error_code": code, "error_msg": message},
    }
    return _json(status, body, code)


def _json(status: int, body: object, outcome: str) -> Response:
    headers = [
        ("Content-Type", "application/json;charset=UTF-8"),
        ("X-Request-Id", uuid.uuid4().hex),
    ]
    return Response(status, json.dumps(body).encode(), headers, outcome=outcome)
