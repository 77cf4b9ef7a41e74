"""Dysmsapi 2017-05-25: SendSms and QuerySendDetails, answered from the truth.

The API as docs/providers/aliyun-sms.md describes it.

Business errors are HTTP 200 with `Code != "OK"` (the SDK does not raise); missing required
parameters are gateway errors (HTTP 400 `Missing<Name>`, the SDK raises).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Callable
from typing import Any

from receiptd_emulator import timeutil
from receiptd_emulator.credentials import Credential
from receiptd_emulator.pop import PopCall, PopGateway, business_error, require
from receiptd_emulator.provider import MissingTemplateVariable, SmsProvider
from receiptd_emulator.sms_records import Send

MAX_RECIPIENTS = 1000
MAX_PAGE_SIZE = 50
QUERY_WINDOW_DAYS = 30
_MAINLAND = re.compile(r"(?:\+?86|0086)?(1[3-9]\d{9})")


def normalize_phone(text: str) -> str | None:
    """The 11-digit mainland number, accepting a +86 / 86 / 0086 prefix; None if not valid."""
    match = _MAINLAND.fullmatch(text.strip())
    return match.group(1) if match else None


class Dysms:
    """`providers` maps the caller's key to its account's provider: an account sends, and
    queries, only its own sends (another account's BizId is "no record")."""

    def __init__(
        self,
        providers: Callable[[Credential], SmsProvider],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._providers = providers
        self._clock = clock

    def register(self, gateway: PopGateway) -> None:
        gateway.register("SendSms", "dysms", self.send_sms)
        gateway.register("QuerySendDetails", "dysms", self.query_send_details)

    # -- SendSms -------------------------------------------------------------------------
    def send_sms(self, call: PopCall) -> dict[str, Any]:
        params = call.params
        numbers = require(params, "PhoneNumbers").split(",")
        sign_name = require(params, "SignName")
        template_code = require(params, "TemplateCode")
        if len(numbers) > MAX_RECIPIENTS:
            return business_error("isv.MOBILE_COUNT_OVER_LIMIT", "手机号码数量超过限制")
        phones = [normalize_phone(n) for n in numbers]
        if None in phones:
            return business_error("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
        provider = self._providers(call.credential)
        profile = provider.profile
        if sign_name not in profile.sign_names:
            return business_error("isv.SMS_SIGNATURE_ILLEGAL", "签名不合法(不存在或被拉黑)")
        if template_code not in profile.templates:
            return business_error("isv.SMS_TEMPLATE_ILLEGAL", "模板不合法(不存在或被拉黑)")
        variables = template_params(params.get("TemplateParam", ""))
        if variables is None:
            return business_error("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")
        try:
            content = provider.render(sign_name, template_code, variables)
        except MissingTemplateVariable as missing:
            return business_error("isv.TEMPLATE_MISSING_PARAMETERS", f"模板缺少变量: {missing}")
        biz_id = provider.send(
            [p for p in phones if p is not None],
            sign_name,
            template_code,
            content,
            out_id=params.get("OutId", ""),
            extend_code=params.get("SmsUpExtendCode", ""),
        )
        return {"Code": "OK", "Message": "OK", "BizId": biz_id}

    # -- QuerySendDetails ----------------------------------------------------------------
    def query_send_details(self, call: PopCall) -> dict[str, Any]:
        params = call.params
        phone_text = require(params, "PhoneNumber")
        send_date = require(params, "SendDate")
        page_size = _positive_int(require(params, "PageSize"), MAX_PAGE_SIZE)
        current_page = _positive_int(require(params, "CurrentPage"), None)
        phone = normalize_phone(phone_text)
        if phone is None:
            return business_error("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
        if page_size is None or current_page is None:
            return business_error(
                "isv.INVALID_PARAMETERS", "PageSize must be 1..50 and CurrentPage >= 1"
            )
        if not self._in_window(send_date):
            return business_error(
                "isv.INVALID_PARAMETERS", "SendDate must be yyyyMMdd within the last 30 days"
            )
        records = self._providers(call.credential).records
        matches = records.query(phone, send_date, params.get("BizId", ""))
        start = (current_page - 1) * page_size
        now = self._clock()
        rows = [_detail(send, now) for send in matches[start : start + page_size]]
        return {
            "Code": "OK",
            "Message": "OK",
            "TotalCount": len(matches),
            "SmsSendDetailDTOs": {"SmsSendDetailDTO": rows},
        }

    def _in_window(self, send_date: str) -> bool:
        """`yyyyMMdd`, China date, today or one of the 29 days before."""
        if not re.fullmatch(r"\d{8}", send_date):
            return False
        try:
            day = dt.date(int(send_date[:4]), int(send_date[4:6]), int(send_date[6:]))
        except ValueError:
            return False
        today = timeutil.from_epoch(self._clock()).astimezone(timeutil.CST).date()
        return today - dt.timedelta(days=QUERY_WINDOW_DAYS - 1) <= day <= today


def template_params(text: str) -> dict[str, str] | None:
    """TemplateParam must be a JSON object of string values (None: invalid)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        return None
    return value


def _positive_int(text: str, maximum: int | None) -> int | None:
    try:
        value = int(text)
    except ValueError:
        return None
    if value < 1 or (maximum is not None and value > maximum):
        return None
    return value


def _detail(send: Send, now: float) -> dict[str, Any]:
    status = send.status_at(now)
    receive_time = send.receive_time()
    return {
        "PhoneNum": send.phone,
        "SendStatus": status,
        "ErrCode": send.err_code if status != 1 else "",
        "TemplateCode": send.template_code,
        "Content": send.content,
        "SendDate": timeutil.cst_text(send.send_time),
        "ReceiveDate": timeutil.cst_text(receive_time) if status != 1 and receive_time else "",
        "OutId": send.out_id,
    }
