"""Receipt bodies of international sends, and when they arrive.

Two shapes (both base64 of UTF-8 JSON in MNS, like every Alicom body):
- the China site's **GlobeSmsReport** (https://help.aliyun.com/zh/sms/globesmsreport):
  snake_case, `status` "1" success / "2" failure, times `yyyy-MM-dd HH:mm:ss` China time with
  no zone, in the queue `Alicom-Queue-<uid>-GlobeSmsReport`;
- the international site's **SmsReport**
  (https://help.aliyun.com/en/sms/smsreport-mns-intl,
  https://help.aliyun.com/zh/sms/smsreport-http-intl): PascalCase, `Status` "1" success /
  "2" failed / "6" expired, RFC 2822 times with an offset (`Thu, 25 Nov 2021 10:27:00 +0800`),
  `ErrorCode` "success" on success, in `Alicom-Queue-<uid>-SmsReport` of the international MNS.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
from typing import Any

from receiptd_emulator import receipts, timeutil
from receiptd_emulator.globe_records import GlobeSend
from receiptd_emulator.profiles import Profile

#: The China site's GlobeSmsReport has no documented success code; the China SmsReport's.
CN_SUCCESS = ("DELIVERED", "用户接收成功")
INTL_SUCCESS = ("success", "success")
EXPIRED = ("EXPIRED", "The message expired before it was delivered")


def rfc2822(moment: dt.datetime) -> str:
    """`Thu, 25 Nov 2021 10:27:00 +0800`: RFC 2822, in China time (the pages' offset)."""
    return email.utils.format_datetime(moment.astimezone(timeutil.CST))


def receipt_status(outcome: str, site: str) -> str:
    """The receipt's status: 1 delivered, 2 failed; an expired send is 6 on the international
    site and a plain failure (2) in the China site's GlobeSmsReport, which knows only 1/2."""
    if outcome == "delivered":
        return "1"
    if outcome == "expired" and site == "intl":
        return "6"
    if outcome in ("failed", "expired"):
        return "2"
    raise ValueError(f"a {outcome!r} send has no receipt")


def cn_fields(send: GlobeSend) -> dict[str, Any]:
    """The GlobeSmsReport fields, exactly as documented."""
    return {
        "to": send.to,
        "status": receipt_status(send.outcome, "cn"),
        "message_id": send.message_id,
        "send_date": timeutil.cst_text(send.send_time),
        "receive_date": timeutil.cst_text(_received(send)),
        "error_code": send.err_code,
        "error_description": send.err_msg,
    }


def intl_fields(send: GlobeSend) -> dict[str, Any]:
    """The international SmsReport fields; TaskId only when the send gave one."""
    fields: dict[str, Any] = {
        "To": send.to,
        "Status": receipt_status(send.outcome, "intl"),
        "MessageId": send.message_id,
        "SmsSize": str(send.segments),
        "SendDate": rfc2822(send.send_time),
        "ReceiveDate": rfc2822(_received(send)),
        "ErrorCode": send.err_code,
        "ErrorDescription": send.err_msg,
    }
    if send.task_id:
        fields["TaskId"] = send.task_id
    return fields


def _received(send: GlobeSend) -> dt.datetime:
    received = send.receive_time()
    if received is None:
        raise ValueError("a pending send has no receipt")
    return received


def fields_for(send: GlobeSend) -> dict[str, Any]:
    return intl_fields(send) if send.site == "intl" else cn_fields(send)


def malformed_body(site: str, rng: random.Random, kind: str | None = None) -> str:
    """A body of the site's shape a consumer must dead-letter: bad base64, non-JSON, a list,
    or JSON without the message id (`missing_field`)."""
    kind = kind or rng.choice(receipts.MALFORMED_KINDS)
    if kind != "missing_field":
        return receipts.malformed_body(rng, kind)
    if site == "intl":
        fields: dict[str, Any] = {"To": "85212345678", "Status": "1", "SmsSize": "1"}
    else:
        fields = {"to": "85212345678", "status": "1", "send_date": "2024-01-01 00:00:00"}
    return receipts.encode(fields)


def deliveries(send: GlobeSend, profile: Profile, rng: random.Random) -> list[tuple[float, str]]:
    """(arrival time, body) of every receipt message this send will produce."""
    if send.receive_ts is None:
        return []
    return receipts.scheduled(
        send.receive_ts,
        send.fate,
        receipts.encode(fields_for(send)),
        lambda r: malformed_body(send.site, r),
        profile,
        rng,
    )
