"""Dysmsapi 2018-05-01 adapter: SendMessageToGlobe, BatchSendMessageToGlobe,
SendMessageWithTemplate, and the ``StatusLookup`` of MessageId sends over QueryMessage.

Built on the official ``alibabacloud_dysmsapi20180501`` client, configured as the 2017-05-25
one (:func:`receiptd.providers.aliyun.openapi.tea_config`). This API answers business
outcomes in ``ResponseCode``, not ``Code`` (docs/international.md, "Answers and errors");
gateway errors (signature, throttling) raise as on 2017-05-25 and are translated by the same
:func:`receiptd.providers.aliyun.dysms.translate`. SDK types stay inside this module.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from alibabacloud_dysmsapi20180501 import models as globe_models
from alibabacloud_dysmsapi20180501.client import Client

from receiptd import domain, ports
from receiptd.compensation import planning
from receiptd.logs import get_logger
from receiptd.providers.aliyun.credentials import OpenApiAccess
from receiptd.providers.aliyun.dysms import (
    AliyunQueryWindow,
    DysmsError,
    RetryPolicy,
    count_call,
    is_throttled,
    translate,
)
from receiptd.providers.aliyun.openapi import tea_config

log = get_logger(__name__)
BATCH_LIMIT = 1000  # numbers per BatchSendMessageToGlobe call
BATCH_RATE = 1.0  # BatchSendMessageToGlobe calls per second per account (its documented cap)
NO_RECORD = "DATA_NOT_EXIST"
# QueryMessage's Status on its current page: 1 delivered, 2 failed, 3 still delivering. An
# older page reads 1 as "submitted" and 3 as "delivered"; docs/international.md, "Status codes".
_QUERY_STATUS = {"1": domain.SendStatus.DELIVERED, "2": domain.SendStatus.FAILED}
_RETRYABLE = frozenset({"SYSTEM_ERROR", "ONLINE_BILLING_FAILED", "QPS_LIMIT_CONTROL"})
_THROTTLED = frozenset({"QPS_LIMIT_CONTROL"})
SEND_RETRY = RetryPolicy()
QUERY_RETRY = RetryPolicy(attempts=3, base=0.2, cap=2.0)


def make_client(access: OpenApiAccess) -> Client:
    """A Dysmsapi 2018-05-01 client with these credentials, endpoint and timeouts."""
    return Client(tea_config(access))


class UnpairedBatch(DysmsError):
    """A batch the provider accepted whose MessageIds cannot be paired with its numbers:
    nothing can be registered, and sending again would charge twice."""

    def __init__(self, numbers: int) -> None:
        super().__init__(
            "UnpairedBatch",
            f"{numbers} numbers sent, MessageIds not attributable: not registered "
            "(receipts are still stored; do not send again)",
        )


@dataclass(frozen=True, slots=True)
class GlobeSend:
    """One number's accepted send: the MessageId its receipts and QueryMessage know it by."""

    message_id: str
    phone_number: str  # as the provider wrote it back (country code and digits)
    request_id: str | None = None
    segments: int | None = None


def _answer(call: Callable[[], Any]) -> Any:
    """One SDK call's body, or DysmsError; a ``ResponseCode`` other than OK is an error."""
    body = translate(call).body
    code = str(body.response_code or "Unknown")
    if code != "OK":
        error = DysmsError(code, str(body.response_description or ""), body.request_id)
        if code in _THROTTLED:
            error.kind = "throttled"
        raise error
    return body


def _retryable(exc: BaseException) -> bool:
    if not isinstance(exc, DysmsError):
        return False
    return exc.code in _RETRYABLE or exc.kind == "throttled"


def send_to_globe(
    client: Client,
    phone_number: str,
    message: str,
    *,
    sender: str | None = None,
    task_id: str | None = None,
    retry: RetryPolicy = SEND_RETRY,
) -> GlobeSend:
    """SendMessageToGlobe to one number (``85212345678``). Retries only what the provider
    says may be retried. A retry after a timeout can send twice (the API is not idempotent)."""
    request = globe_models.SendMessageToGlobeRequest(
        to=domain.normalize_globe_phone(phone_number),
        message=message,
        from_=sender,
        task_id=task_id,
    )
    body = retry.run(lambda: _answer(lambda: client.send_message_to_globe(request)), _retryable)
    return _accepted(body, phone_number)


def send_with_template(
    client: Client,
    phone_number: str,
    sign_name: str,
    template_code: str,
    template_param: str | None = None,
    *,
    retry: RetryPolicy = SEND_RETRY,
) -> GlobeSend:
    """SendMessageWithTemplate: a mainland number (``8613812345678``) from the international
    site, with an approved signature and template."""
    request = globe_models.SendMessageWithTemplateRequest(
        to=domain.normalize_globe_phone(phone_number),
        from_=sign_name,
        template_code=template_code,
        template_param=template_param,
    )
    body = retry.run(
        lambda: _answer(lambda: client.send_message_with_template(request)), _retryable
    )
    return _accepted(body, phone_number)


def batch_send_to_globe(
    client: Client,
    phone_numbers: Sequence[str],
    message: str,
    *,
    sender: str | None = None,
    task_id: str | None = None,
    retry: RetryPolicy = SEND_RETRY,
) -> list[GlobeSend] | None:
    """BatchSendMessageToGlobe to up to 1,000 numbers, one message for all. Its answer lists
    MessageIds in an undocumented order: they are paired with the numbers by position only
    when nothing failed (``FailedList`` empty, as many ids as numbers). Otherwise None: the
    numbers that were accepted cannot be told apart, and the caller must not send again
    (they would be charged twice); docs/international.md, "Batch sends"."""
    numbers = [domain.normalize_globe_phone(n) for n in phone_numbers]
    if not 0 < len(numbers) <= BATCH_LIMIT:
        raise ValueError(f"a batch takes 1 to {BATCH_LIMIT} numbers, got {len(numbers)}")
    request = globe_models.BatchSendMessageToGlobeRequest(
        to=json.dumps(numbers),
        message=json.dumps([message] * len(numbers), ensure_ascii=False),
        from_=sender,
        task_id=task_id,
    )
    body = retry.run(
        lambda: _answer(lambda: client.batch_send_message_to_globe(request)), _retryable
    )
    ids, failed = _json_list(body.message_id_list), _json_list(body.failed_list)
    if failed or len(ids) != len(numbers):
        log.warning("globe_batch_unpaired", numbers=len(numbers), ids=len(ids), failed=len(failed))
        return None
    return [GlobeSend(str(i), n, body.request_id) for i, n in zip(ids, numbers, strict=True)]


def _accepted(body: Any, phone_number: str) -> GlobeSend:
    if not body.message_id:
        raise DysmsError("NoMessageId", "the answer names no MessageId", body.request_id)
    segments = str(body.segments or "")
    return GlobeSend(
        str(body.message_id),
        domain.normalize_globe_phone(str(body.to or phone_number)),
        body.request_id,
        int(segments) if segments.isdigit() else None,
    )


def _json_list(text: str | None) -> list[Any]:
    """``MessageIdList`` / ``FailedList``: JSON-array strings (``'["123","124"]'``)."""
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return [text]  # not a list: unpairable, never guessed at
    return value if isinstance(value, list) else [value]


class QueryMessageLookup(AliyunQueryWindow):
    """``ports.StatusLookup`` of MessageId sends: one QueryMessage per send.

    The look-back of QueryMessage is undocumented: it is taken to be Dysmsapi's 30 days
    (docs/international.md), so a send older than that expires without a call, as a BizId
    send does. ``DATA_NOT_EXIST`` is "no record yet": the send stays pending, as
    QuerySendDetails' empty answer leaves it.
    """

    def __init__(
        self,
        client: Client,
        *,
        tz: tzinfo = domain.CHINA_TZ,
        retry: RetryPolicy = QUERY_RETRY,
        account: str = domain.DEFAULT_ACCOUNT,
    ) -> None:
        self.client = client
        self.tz = tz
        self.retry = retry
        self.account = account

    def plan(self, sends: Sequence[ports.PendingSend]) -> tuple[planning.PlannedQuery, ...]:
        return tuple(planning.by_biz_id(sends, domain.SendKey.MESSAGE_ID))

    def lookup(
        self, sends: Sequence[ports.PendingSend], limiter: ports.RateLimiter
    ) -> ports.LookupResult:
        """Never raises: a failed query leaves its send pending and is counted."""
        calls: dict[str, int] = {}
        found = [s for send in sends if (s := self._settle(send, limiter, calls)) is not None]
        return ports.LookupResult(found, calls)

    def _settle(
        self, send: ports.PendingSend, limiter: ports.RateLimiter, calls: dict[str, int]
    ) -> ports.Settlement | None:
        request = globe_models.QueryMessageRequest(message_id=send.biz_id)

        def attempt() -> Any:
            limiter.acquire()  # every attempt, retries included, takes a token first
            try:
                body = _answer(lambda: self.client.query_message(request))
            except DysmsError as exc:
                count_call(calls, "ok" if exc.code == NO_RECORD else exc.kind, self.account)
                raise
            count_call(calls, "ok", self.account)
            return body

        try:
            body = self.retry.run(attempt, is_throttled)
        except DysmsError as exc:
            if exc.code != NO_RECORD:
                log.warning("query_message_failed", code=exc.code, kind=exc.kind)
            return None
        return settlement_of(send, body.status, body.error_code)


def settlement_of(
    send: ports.PendingSend, status: object, error_code: object
) -> ports.Settlement | None:
    """A QueryMessage answer for one send: delivered (1), failed (2), else still pending."""
    final = _QUERY_STATUS.get(str(status or "").strip())
    if final is None:
        return None
    code = str(error_code) if error_code else None  # DELIVERED, as QuerySendDetails keeps it
    return ports.Settlement(send.id, final, domain.SettledBy.QUERY, code)
