"""Dysmsapi adapter: SendSms and the Aliyun ``StatusLookup`` over QuerySendDetails.

Built on the official ``alibabacloud_dysmsapi20170525`` client (config from ``tea_config``:
bounded connect/read timeouts). SDK exception types stay inside this module: callers see
:class:`DysmsError` (SendSms) or plain counts and settlements (lookups).

Business errors arrive as HTTP 200 with ``Code != "OK"``; gateway throttling raises. The SDK's
own retry does not retry a throttled call (its retry condition skips throttling errors), so
retries here use tenacity:
bounded attempts, exponential backoff with full jitter, retryable codes only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any, TypeVar

import tenacity
from alibabacloud_dysmsapi20170525 import models as sms_models
from alibabacloud_dysmsapi20170525.client import Client
from Tea.exceptions import TeaException

from receiptd import domain, metrics, ports
from receiptd.compensation import planning
from receiptd.logs import get_logger
from receiptd.providers.aliyun.credentials import OpenApiAccess
from receiptd.providers.aliyun.openapi import tea_config

log = get_logger(__name__)
T = TypeVar("T")
PAGE_SIZE = 50
_RETRYABLE_SEND = frozenset({"isp.SYSTEM_ERROR", "isv.BUSINESS_LIMIT_CONTROL"})
_UNAVAILABLE = frozenset({"ServiceUnavailable", "InternalError", "isp.SYSTEM_ERROR"})


class DysmsError(Exception):
    """Dysmsapi refused or failed a call. ``kind``: throttled | unavailable | error."""

    def __init__(self, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.request_id = request_id
        self.kind = _kind_of(code)


def _kind_of(code: str) -> str:
    if code.startswith("Throttling") or code == "isv.BUSINESS_LIMIT_CONTROL":
        return "throttled"
    if code in _UNAVAILABLE or code == "Network":
        return "unavailable"
    return "error"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and full jitter (seconds)."""

    attempts: int = 4
    base: float = 0.5
    cap: float = 8.0

    def run(self, call: Callable[[], T], retry_if: Callable[[BaseException], bool]) -> T:
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=tenacity.wait_random_exponential(multiplier=self.base, max=self.cap),
            retry=tenacity.retry_if_exception(retry_if),
            reraise=True,
        )
        return retrying(call)


@dataclass(frozen=True, slots=True)
class SendReceipt:
    biz_id: str
    request_id: str | None


def make_client(access: OpenApiAccess) -> Client:
    """A Dysmsapi client with these credentials, endpoint and timeouts."""
    return Client(tea_config(access))


def _call(call: Callable[[], Any]) -> Any:
    """Run one SDK call; return its body or raise DysmsError (no SDK type escapes)."""
    body = translate(call).body
    if body.code != "OK":
        raise DysmsError(str(body.code), str(body.message or ""), body.request_id)
    return body


def translate(call: Callable[[], Any]) -> Any:
    """Run one SDK call of either Dysmsapi version; its response, or DysmsError for a
    gateway or transport failure (business outcomes are the caller's to read)."""
    try:
        return call()
    except TeaException as exc:
        code = str(exc.code or "Unknown")
        status = getattr(exc, "status_code", None) or getattr(exc, "statusCode", None)
        if isinstance(status, int) and status >= 500 and not code.startswith("Throttling"):
            code = code if code in _UNAVAILABLE else "ServiceUnavailable"
        if exc.code is None:  # a transport failure wrapped by the SDK's retry loop
            code = "Network"
        raise DysmsError(code, str(exc.message or exc), getattr(exc, "request_id", None)) from None
    except OSError as exc:  # requests' errors derive from OSError
        raise DysmsError("Network", f"{type(exc).__name__}: {exc}") from None


def send_sms(
    client: Client,
    phone_numbers: Sequence[str],
    sign_name: str,
    template_code: str,
    template_param: str | None = None,
    out_id: str | None = None,
    *,
    retry: RetryPolicy = RetryPolicy(),
) -> SendReceipt:
    """SendSms to up to 1,000 numbers; retries only isp.SYSTEM_ERROR, flow control, throttling."""
    request = sms_models.SendSmsRequest(
        phone_numbers=",".join(phone_numbers),
        sign_name=sign_name,
        template_code=template_code,
        template_param=template_param,
        out_id=out_id,
    )

    def retryable(exc: BaseException) -> bool:
        if not isinstance(exc, DysmsError):
            return False
        return exc.code in _RETRYABLE_SEND or exc.code.startswith("Throttling")

    body = retry.run(lambda: _call(lambda: client.send_sms(request)), retryable)
    return SendReceipt(str(body.biz_id), body.request_id)


class AliyunQueryWindow:
    """What both Dysmsapi lookups share: the provider, and its 30-day query window counted
    in the provider's zone (QueryMessage's look-back is undocumented and read as the same:
    docs/international.md)."""

    tz: tzinfo

    @property
    def provider(self) -> domain.Provider:
        return domain.Provider.ALIYUN

    def in_window(self, send: ports.PendingSend, now: datetime) -> bool:
        return domain.in_query_window(send.send_date, now, self.tz)

    def oldest_send_date(self, now: datetime) -> date:
        return now.astimezone(self.tz).date() - timedelta(days=domain.ALIYUN_QUERY_WINDOW_DAYS)


class AliyunStatusLookup(AliyunQueryWindow):
    """``ports.StatusLookup`` over QuerySendDetails, planned by
    :mod:`receiptd.compensation.planning`."""

    def __init__(
        self,
        client: Client,
        *,
        tz: tzinfo = domain.CHINA_TZ,
        retry: RetryPolicy = RetryPolicy(attempts=3, base=0.2, cap=2.0),
        concurrency: int = 1,
        account: str = domain.DEFAULT_ACCOUNT,
    ) -> None:
        self.client = client  # signed with the account's keys: it sees that account's sends
        self.account = account
        self.tz = tz
        self.retry = retry
        self.concurrency = max(1, concurrency)

    @staticmethod
    def concurrency_for(rate_limit: float) -> int:
        """One worker thread per ~200 calls/s of the rate (a thread signs and sends a few
        hundred requests a second), at most 16."""
        return min(16, math.ceil(rate_limit / 200))

    def plan(self, sends: Sequence[ports.PendingSend]) -> tuple[planning.PlannedQuery, ...]:
        return planning.plan(sends)

    def lookup(
        self, sends: Sequence[ports.PendingSend], limiter: ports.RateLimiter
    ) -> ports.LookupResult:
        """Never raises: failed queries leave their sends pending and are counted."""
        queries = planning.plan(sends)
        if self.concurrency == 1 or len(queries) < 2:
            outcomes = [self._run(q, limiter) for q in queries]
        else:
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="dysms") as pool:
                outcomes = list(pool.map(lambda q: self._run(q, limiter), queries))
        settlements = [s for found, _ in outcomes for s in found]
        calls: dict[str, int] = {}
        for _, counted in outcomes:
            for result, n in counted.items():
                calls[result] = calls.get(result, 0) + n
        return ports.LookupResult(settlements, calls)

    # --- one planned query -----------------------------------------------------------------

    def _run(
        self, query: planning.PlannedQuery, limiter: ports.RateLimiter
    ) -> tuple[list[ports.Settlement], dict[str, int]]:
        calls: dict[str, int] = {}
        return self._answer(query, limiter, calls), calls

    def _answer(
        self, query: planning.PlannedQuery, limiter: ports.RateLimiter, calls: dict[str, int]
    ) -> list[ports.Settlement]:
        """Settlements for one query; a failed query leaves its sends pending."""
        try:
            details = self._details(query, limiter, calls)
        except DysmsError as exc:
            log.warning(
                "query_send_details_failed",
                code=exc.code,
                kind=exc.kind,
                sends=len(query.sends),
                request_id=exc.request_id,
            )
            return []
        if details is None:  # a group query costlier than asking per BizId
            matched = planning.Match(fallback=query.sends)
        else:
            matched = planning.match(query, details)
        found = list(matched.settlements)
        for single in planning.by_biz_id(matched.fallback):
            found.extend(self._answer(single, limiter, calls))
        return found

    def _details(
        self, query: planning.PlannedQuery, limiter: ports.RateLimiter, calls: dict[str, int]
    ) -> list[planning.Detail] | None:
        """Every row of the query, walking all pages; None when a group query would cost more
        pages than one BizId query per send."""
        total, rows = self._page(query, 1, limiter, calls)
        last = planning.pages(total, PAGE_SIZE)
        if query.biz_id is None and last - 1 > len(query.sends):
            return None
        for page in range(2, last + 1):
            rows.extend(self._page(query, page, limiter, calls)[1])
        return rows

    def _page(
        self,
        query: planning.PlannedQuery,
        page: int,
        limiter: ports.RateLimiter,
        calls: dict[str, int],
    ) -> tuple[int, list[planning.Detail]]:
        request = sms_models.QuerySendDetailsRequest(
            phone_number=query.phone_number,
            biz_id=query.biz_id,
            send_date=query.send_date.strftime("%Y%m%d"),
            page_size=PAGE_SIZE,
            current_page=page,
        )

        def attempt() -> Any:
            limiter.acquire()  # every attempt, retries included, takes a token first
            try:
                body = _call(lambda: self.client.query_send_details(request))
            except DysmsError as exc:
                count_call(calls, exc.kind, self.account)
                raise
            count_call(calls, "ok", self.account)
            return body

        body = self.retry.run(attempt, is_throttled)
        dtos = body.sms_send_detail_dtos
        rows = (dtos.sms_send_detail_dto if dtos else None) or []
        details = [
            planning.Detail(int(r.send_status or 0), r.out_id or None, r.err_code or None)
            for r in rows
        ]
        return int(body.total_count or 0), details


def is_throttled(exc: BaseException) -> bool:
    return isinstance(exc, DysmsError) and exc.kind == "throttled"


def count_call(calls: dict[str, int], result: str, account: str) -> None:
    calls[result] = calls.get(result, 0) + 1
    metrics.COMPENSATOR_CALLS.labels(domain.Provider.ALIYUN.value, account, result).inc()
