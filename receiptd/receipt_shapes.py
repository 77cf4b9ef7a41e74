"""The three bodies Alibaba reports a send's outcome in, decoded to one :class:`SmsReport`.

- the China site's **SmsReport** (snake_case, ``biz_id``): ``domain.report_from_fields``;
- the China site's **GlobeSmsReport**, for sends made with SendMessageToGlobe (snake_case,
  ``to``, ``status`` 1/2, ``message_id``, zone-less China times);
- the international site's **SmsReport** (PascalCase, ``To``, ``Status`` 1/2/6, ``MessageId``,
  ``TaskId``, RFC 2822 times with their offset).

docs/international.md has the field tables and the pages they come from. A body is
recognised by the keys only its shape has, on every channel (a queue, an HTTP push): Alibaba's
pages disagree on which queue or push carries which shape, and reading all three everywhere
costs nothing. A body with none of those keys is read as a China SmsReport, whose decoder names
the missing field. Pure: nothing here does I/O; every failure is a :class:`BodyError`.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import Any

from receiptd import domain
from receiptd.domain import BodyError, Fields, ReportShape, SendKey, SmsReport

# Status codes of the two MessageId shapes (current pages): 1 success, 2 failed, 6 expired
# (international site only). Older pages contradict them; docs/international.md, "Status codes".
_SUCCESS = "1"
_FAILURES = frozenset({"2", "6"})
EXPIRED_STATUS = "6"
EXPIRED_CODE = "EXPIRED"  # err_code of a status-6 receipt that names no code of its own

_GLOBE_KEYS = ("message_id", "to")
_INTL_KEYS = ("MessageId", "To", "Status")


def shape_of(data: Mapping[str, Any]) -> ReportShape:
    """Which receipt body this decoded object is (a China SmsReport unless proven otherwise)."""
    if "biz_id" in data:
        return ReportShape.SMS_REPORT
    if any(key in data for key in _INTL_KEYS):
        return ReportShape.INTL_SMS_REPORT
    if any(key in data for key in _GLOBE_KEYS):
        return ReportShape.GLOBE_SMS_REPORT
    return ReportShape.SMS_REPORT


def parse_receipt(raw: str | bytes, tz: tzinfo = domain.CHINA_TZ) -> SmsReport:
    """A raw receipt queue body (base64 JSON) in any of the three shapes, or BodyError."""
    return receipt_from_fields(domain.decode_json_body(raw), tz)


def receipt_from_fields(data: Mapping[str, Any], tz: tzinfo = domain.CHINA_TZ) -> SmsReport:
    """A decoded receipt object (a queue body, or one element of a pushed array)."""
    shape = shape_of(data)
    if shape is ReportShape.INTL_SMS_REPORT:
        return intl_report(data, tz)
    if shape is ReportShape.GLOBE_SMS_REPORT:
        return globe_report(data, tz)
    return domain.report_from_fields(data, tz)


def globe_report(data: Mapping[str, Any], tz: tzinfo = domain.CHINA_TZ) -> SmsReport:
    """A GlobeSmsReport object. Its times carry no zone: read in the provider's (``tz``)."""
    fields = Fields(data, tz)
    success, err_code = _outcome(fields, "status", fields.text("error_code"))
    return SmsReport(
        biz_id=fields.required_text("message_id"),
        phone_number=domain.normalize_globe_phone(fields.required_text("to")),
        success=success,
        send_time=fields.required_time("send_date"),
        report_time=fields.time("receive_date"),
        err_code=err_code,
        err_msg=fields.text("error_description"),
        message_id=fields.text("message_id"),
        matched_by=SendKey.MESSAGE_ID,
        shape=ReportShape.GLOBE_SMS_REPORT,
    )


def intl_report(data: Mapping[str, Any], tz: tzinfo = domain.CHINA_TZ) -> SmsReport:
    """An international-site SmsReport object (MNS body or pushed element)."""
    fields = Fields(data, tz)
    success, err_code = _outcome(fields, "Status", fields.text("ErrorCode"))
    message_id = fields.required_text("MessageId")
    send_time = _rfc2822(fields, "SendDate", tz)
    if send_time is None:
        raise BodyError("required field 'SendDate' is missing")
    return SmsReport(
        biz_id=message_id,
        phone_number=domain.normalize_globe_phone(fields.required_text("To")),
        success=success,
        send_time=send_time,
        report_time=_rfc2822(fields, "ReceiveDate", tz),
        err_code=err_code,
        err_msg=fields.text("ErrorDescription"),
        sms_size=fields.count("SmsSize"),
        message_id=message_id,
        matched_by=SendKey.MESSAGE_ID,
        shape=ReportShape.INTL_SMS_REPORT,
        task_id=fields.text("TaskId"),
    )


def _outcome(fields: Fields, name: str, err_code: str | None) -> tuple[bool, str | None]:
    """(delivered?, err_code): 1 delivered; 2 failed; 6 failed as the provider's "expired",
    its code kept (``EXPIRED`` when the body names none). A number or a string alike."""
    status = fields.required_text(name).strip()
    if status == _SUCCESS:
        return True, err_code
    if status in _FAILURES:
        return False, err_code or (EXPIRED_CODE if status == EXPIRED_STATUS else None)
    raise BodyError(f"field {name!r} must be 1, 2 or 6, got {status!r}")


def _rfc2822(fields: Fields, name: str, tz: tzinfo) -> datetime | None:
    """``Thu, 25 Nov 2021 10:27:00 +0800`` read with its offset, in UTC. A zone-less time
    (``-0000``, or the China site's ``yyyy-MM-dd HH:mm:ss`` that an older page shows) is read
    in the provider's zone ``tz``."""
    value = fields.text(name)
    if value is None:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        try:
            return domain.parse_provider_time(value, tz)
        except ValueError:
            raise BodyError(
                f"field {name!r}: {value!r} is neither an RFC 2822 date nor 'yyyy-MM-dd HH:mm:ss'"
            ) from None
    try:
        return domain.to_utc(parsed if parsed.tzinfo else parsed.replace(tzinfo=tz))
    except ValueError as exc:
        raise BodyError(f"field {name!r}: {exc}") from None
