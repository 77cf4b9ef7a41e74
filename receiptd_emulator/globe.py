"""Dysmsapi 2018-05-01, the international SMS API: SendMessageToGlobe,
BatchSendMessageToGlobe, SendMessageWithTemplate and QueryMessage, answered from the truth.

Alibaba's pages: https://www.alibabacloud.com/help/en/sms/api-sendmessagetoglobe,
https://help.aliyun.com/zh/sms/querymessage-intl, error codes
https://help.aliyun.com/zh/sms/error-code-intl. Answers carry `ResponseCode` /
`ResponseDescription` (not `Code`); business errors, the per-account limits
(`QPS_LIMIT_CONTROL`) included, are HTTP 200. A missing required parameter is the gateway's
`Missing<Name>` (HTTP 400), as for every POP API whose page marks the parameter required.

The China site serves SendMessageToGlobe and QueryMessage (dysmsapi.aliyuncs.com); the
international site all four (dysmsapi.ap-southeast-1.aliyuncs.com).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from receiptd_emulator import globe_receipts
from receiptd_emulator.credentials import Credential
from receiptd_emulator.dysms import template_params
from receiptd_emulator.faults import QpsLimiter
from receiptd_emulator.globe_numbers import is_international, is_mainland, mainland_86
from receiptd_emulator.globe_provider import GlobeProvider, Outgoing
from receiptd_emulator.globe_records import GlobeSend
from receiptd_emulator.pop import GLOBE_VERSION, PopCall, PopGateway, require
from receiptd_emulator.provider import MissingTemplateVariable, render

MAX_BATCH = 1000
QUERY_DAYS = 30  # QueryMessage's look-back is undocumented: the 2017 API's 30 days
ACCEPTED = "The SMS Send Request was accepted"
TYPES = ("OTP", "NOTIFY", "MKT")
BATCH_TYPES = ("NOTIFY", "MKT")
_SENDER_ID = re.compile(r"[A-Za-z0-9]{1,11}|\d{1,15}")

Answer = dict[str, Any]


def business_error(code: str, description: str) -> Answer:
    """A 2018-05-01 business error: HTTP 200, `ResponseCode != "OK"`."""
    return {"ResponseCode": code, "ResponseDescription": description}


def _options_problem(params: Mapping[str, str], types: tuple[str, ...]) -> Answer | None:
    """The optional parameters every send takes: From, Type, TaskId, ValidityPeriod."""
    sender = params.get("From", "")
    if sender and not _SENDER_ID.fullmatch(sender):
        return business_error(
            "INVALID_SENDERID", "From must be <= 11 letters/digits or <= 15 digits"
        )
    if params.get("Type", "") and params["Type"] not in types:
        return business_error("INVALID_PARAMETERS", f"Type must be one of {types}")
    if len(params.get("TaskId", "")) > 255:
        return business_error("PARAM_LENGTH_LIMIT", "TaskId is longer than 255 characters")
    validity = params.get("ValidityPeriod", "")
    if validity and not (validity.isdigit() and int(validity) > 0):
        return business_error("INVALID_PARAMETERS", "ValidityPeriod must be a positive integer")
    return None


def _outgoing(params: Mapping[str, str], to: str, message: str, template: str = "") -> Outgoing:
    validity = params.get("ValidityPeriod", "")
    return Outgoing(
        to=to,
        message=message,
        sender=params.get("From", ""),
        task_id=params.get("TaskId", ""),
        validity=int(validity) if validity else None,
        template_code=template,
    )


def _accepted(send: GlobeSend) -> Answer:
    return {
        "ResponseCode": "OK",
        "ResponseDescription": ACCEPTED,
        "MessageId": send.message_id,
        "To": send.to,
        "Segments": str(send.segments),
        "NumberDetail": send.number_detail.as_fields(),
    }


def _string_list(text: str) -> list[str] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return value


class Globe:
    """The 2018-05-01 actions of one site. `providers` maps the caller's key to its account's
    international sends; `limiter` counts each account's calls on the provider's clock."""

    def __init__(
        self,
        site: str,
        providers: Callable[[Credential], GlobeProvider],
        limiter: QpsLimiter,
        clock: Callable[[], float],
    ) -> None:
        self.site = site
        self._providers = providers
        self._limiter = limiter
        self._clock = clock

    def register(self, gateway: PopGateway) -> None:
        actions: dict[str, Callable[[PopCall], Answer]] = {
            "SendMessageToGlobe": self.send_message_to_globe,
            "QueryMessage": self.query_message,
        }
        if self.site == "intl":
            actions["BatchSendMessageToGlobe"] = self.batch_send_message_to_globe
            actions["SendMessageWithTemplate"] = self.send_message_with_template
        for action, handler in actions.items():
            gateway.register(action, "dysms", self._limited(action, handler), (GLOBE_VERSION,))

    def _limited(
        self, action: str, handler: Callable[[PopCall], Answer]
    ) -> Callable[[PopCall], Answer]:
        def answer(call: PopCall) -> Answer:
            if not self._limiter.allow(action, call.credential.account):
                return business_error("QPS_LIMIT_CONTROL", f"{action}: calls per second exceeded")
            return handler(call)

        return answer

    # -- sends ---------------------------------------------------------------------------
    def send_message_to_globe(self, call: PopCall) -> Answer:
        params = call.params
        to, message = require(params, "To"), require(params, "Message")
        problem = _options_problem(params, TYPES)
        if problem is not None:
            return problem
        if not is_international(to) or is_mainland(to):
            return business_error(
                "MOBILE_NUMBER_ILLEGAL",
                "To must be country code + number, and not a Chinese mainland number",
            )
        (send,) = self._providers(call.credential).send([_outgoing(params, to, message)])
        return {**_accepted(send), "From": params.get("From", "")}

    def batch_send_message_to_globe(self, call: PopCall) -> Answer:
        params = call.params
        numbers = _string_list(require(params, "To"))
        messages = _string_list(require(params, "Message"))
        if numbers is None or messages is None:
            return business_error("INVALID_JSON_PARAM", "To and Message must be JSON string arrays")
        if len(numbers) > MAX_BATCH:
            return business_error("MOBILE_COUNT_OVER_LIMIT", f"at most {MAX_BATCH} numbers")
        if not numbers or len(messages) != len(numbers):
            return business_error("INVALID_PARAMETERS", "one Message per number of To")
        problem = _options_problem(params, BATCH_TYPES)
        if problem is not None:
            return problem
        good = [
            _outgoing(params, to, text)
            for to, text in zip(numbers, messages, strict=True)
            if is_international(to) and not is_mainland(to)
        ]
        failed = [to for to in numbers if not is_international(to) or is_mainland(to)]
        sends = self._providers(call.credential).send(good) if good else []
        return {
            "ResponseCode": "OK",
            "ResponseDescription": ACCEPTED,
            "From": params.get("From", ""),
            "SuccessCount": str(len(sends)),
            "MessageIdList": json.dumps([s.message_id for s in sends]),
            "FailedList": json.dumps(failed),
        }

    def send_message_with_template(self, call: PopCall) -> Answer:
        params = call.params
        to, sign = require(params, "To"), require(params, "From")
        template = require(params, "TemplateCode")
        problem = _options_problem({"ValidityPeriod": params.get("ValidityPeriod", "")}, TYPES)
        if problem is not None:
            return problem
        if not mainland_86(to):
            return business_error("MOBILE_NUMBER_ILLEGAL", "To must be 86 + a mainland number")
        provider = self._providers(call.credential)
        if sign not in provider.profile.sign_names:
            return business_error("SMS_SIGN_NAME_ILLEGAL", "unknown or unapproved signature")
        if template not in provider.profile.templates:
            return business_error("SMS_TEMPLATE_ILLEGAL", "unknown or unapproved template")
        variables = template_params(params.get("TemplateParam", ""))
        if variables is None:
            return business_error("INVALID_JSON_PARAM", "TemplateParam: a JSON object of strings")
        try:
            text = render(provider.profile, sign, template, variables)
        except MissingTemplateVariable as missing:
            return business_error("CONTENT_MISSING_PARAMETERS", f"template variables: {missing}")
        outgoing = _outgoing({**params, "From": sign}, to, text, template)
        (send,) = provider.send([outgoing])
        return _accepted(send)

    # -- QueryMessage --------------------------------------------------------------------
    def query_message(self, call: PopCall) -> Answer:
        message_id = require(call.params, "MessageId")
        send = self._providers(call.credential).records.get(message_id)
        now = self._clock()
        if send is None or send.send_time.timestamp() < now - QUERY_DAYS * 86400:
            return business_error("DATA_NOT_EXIST", "no message with this MessageId")
        status = send.query_status(now)
        received = send.receive_time() if status != "3" else None
        code, description = (
            ("DELIVERED", "success")
            if status == "1"
            else ((send.err_code, send.err_msg) if received else ("", ""))
        )
        return {
            "ResponseCode": "OK",
            "ResponseDescription": "OK",
            "Status": status,
            "ErrorCode": code,
            "ErrorDescription": description,
            "Message": send.message,
            "MessageId": send.message_id,
            "To": send.to,
            "SendDate": globe_receipts.rfc2822(send.send_time),
            "ReceiveDate": globe_receipts.rfc2822(received) if received else "",
            "NumberDetail": send.number_detail.as_fields(),
        }
