"""Pure parsing of pushed receipts: Alibaba's HTTP batch push and KooMessage's AIM callback.

Nothing here does I/O. A request body becomes the same ``domain.SmsReport`` / ``domain.SmsUp``
records the MNS decoder returns, plus the elements that could not be parsed (kept as their
JSON text with the reason, for the dead-letter table). A body that cannot be read at all
(not UTF-8, not JSON, the wrong shape, too many elements) raises :class:`domain.BodyError`.

Where the providers' pages disagree (docs/providers/aliyun-push.md and
docs/providers/huawei-koomessage.md, "Unconfirmed") both readings are accepted:
an Alibaba body that is one object instead of an array is one element; ``sequence_id`` may be a
string or a number; ``send_time`` either Alicom format; KooMessage's ``body`` may be a JSON
string (as documented) or the object/array itself; ``send_status`` may be the callback's
``Deliverd`` or the send-details API's ``success``/``fail``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from receiptd import domain, receipt_shapes

SUCCESS_ANSWER = {"code": 0, "msg": "接收成功"}
DEFAULT_MAX_ELEMENTS = 5000
# KooMessage send_status words (lower-cased): the callback page's example says "Deliverd";
# the send-details API says success / fail / sending.
_DELIVERED = frozenset({"deliverd", "delivered", "success"})
_FAILED = frozenset({"fail", "failed", "undeliverd", "undelivered"})
_IN_FLIGHT = frozenset({"sending"})


class TooManyElements(domain.BodyError):
    """More elements than one request may carry (answered 413)."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """One element that is not a valid receipt: its JSON text and the reason. ``crash``: the
    parser raised something else than BodyError on it (a receiptd defect, for the log)."""

    raw: bytes
    error: str
    crash: Exception | None = None


@dataclass
class Parsed:
    """What one pushed request holds. ``ignored``: elements that settle nothing by design
    (KooMessage ``shortchain`` link clicks, ``sending`` progress reports)."""

    reports: list[domain.SmsReport] = field(default_factory=list)
    inbound: list[domain.SmsUp] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    ignored: int = 0

    @property
    def elements(self) -> int:
        return len(self.reports) + len(self.inbound) + len(self.rejected) + self.ignored


def decode_json(raw: bytes) -> Any:
    """UTF-8 JSON text to a value; BodyError names what is wrong."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise domain.BodyError("body is not UTF-8") from None
    return domain.load_json(text)


def element_bytes(element: Any) -> bytes:
    """An element's JSON text, as kept in the dead-letter table (compact, UTF-8; with
    ``\\uXXXX`` escapes when it holds a lone surrogate, which UTF-8 cannot carry).

    Never raises: an element too deeply nested to write back (json.dumps recurses from a
    deeper stack than the parse did) is kept as its Python repr."""
    try:
        text = json.dumps(element, ensure_ascii=False, separators=(",", ":"))
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(element, separators=(",", ":")).encode("ascii")
    except (RecursionError, ValueError):
        return repr(element).encode("utf-8", "backslashreplace")


def _elements(value: Any, max_elements: int, what: str) -> list[Any]:
    if isinstance(value, dict):
        return [value]  # one receipt sent bare: read as a one-element array
    if not isinstance(value, list):
        raise domain.BodyError(f"{what} is a JSON {type(value).__name__}, not an array")
    if len(value) > max_elements:
        raise TooManyElements(f"{what} has {len(value)} elements; at most {max_elements}")
    return value


def _each(
    elements: list[Any], parse: Callable[[Mapping[str, Any]], Any], parsed: Parsed
) -> list[Any]:
    """Parsed values of the good elements; the others are added to ``parsed.rejected``."""
    good = []
    for element in elements:
        try:
            if not isinstance(element, dict):
                raise domain.BodyError(f"element is a JSON {type(element).__name__}, not an object")
            value = parse(element)
        except domain.BodyError as exc:
            parsed.rejected.append(Rejected(element_bytes(element), str(exc)))
            continue
        except Exception as exc:  # a defect of the parser: this element only, never the body
            parsed.rejected.append(
                Rejected(element_bytes(element), f"parser crashed: {exc!r}", exc)
            )
            continue
        if value is not None:
            good.append(value)
        else:
            parsed.ignored += 1
    return good


# --- Alibaba: HTTP batch push -----------------------------------------------------------------


def parse_aliyun(
    raw: bytes,
    kind: domain.MessageType,
    tz: tzinfo = domain.CHINA_TZ,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> Parsed:
    """An Alibaba ``SmsReport`` or ``SmsUp`` push body (a JSON array) to records. A pushed
    receipt may be in either site's shape (the international site pushes PascalCase,
    receiptd.receipt_shapes); each element is read in its own."""
    elements = _elements(decode_json(raw), max_elements, "body")
    parsed = Parsed()
    if kind.is_receipt:
        read = receipt_shapes.receipt_from_fields
        parsed.reports = _each(elements, lambda e: read(e, tz), parsed)
    else:
        parsed.inbound = _each(elements, lambda e: domain.up_from_fields(e, tz), parsed)
    return parsed


# --- Huawei: KooMessage AIM send-status callback -----------------------------------------------


def parse_koomessage(raw: bytes, max_elements: int = DEFAULT_MAX_ELEMENTS) -> Parsed:
    """A ``POST /v1/aim/send-status`` envelope to receipts of Huawei sends.

    ``callback_type = "sms"`` elements become reports (``biz_id`` = task_id, ``phone_number``
    = cust_flag, as Huawei sends are registered); ``shortchain`` (a link click) is ignored.
    """
    envelope = decode_json(raw)
    if not isinstance(envelope, dict):
        raise domain.BodyError(f"body is a JSON {type(envelope).__name__}, not an object")
    callback_type = envelope.get("callback_type")
    if callback_type not in ("sms", "shortchain"):
        raise domain.BodyError(f"callback_type {callback_type!r} is not 'sms' or 'shortchain'")
    body = envelope.get("body")
    if isinstance(body, str):  # as documented: the body is a JSON string
        # Parsed as text: re-encoding it could fail (a lone surrogate escaped in the string).
        body = domain.load_json(body, "envelope body")
    elements = _elements(body, max_elements, "envelope body")
    parsed = Parsed()
    if callback_type == "shortchain":
        parsed.ignored = len(elements)
        return parsed
    parsed.reports = _each(elements, koomessage_report, parsed)
    return parsed


def koomessage_report(data: Mapping[str, Any]) -> domain.SmsReport | None:
    """One ``sms`` element; None for a ``sending`` progress report (nothing final yet)."""
    fields = domain.Fields(data, UTC)
    status = fields.required_text("send_status")
    word = status.lower()
    if word in _IN_FLIGHT:
        return None
    if word not in _DELIVERED | _FAILED:
        raise domain.BodyError(f"field 'send_status': unknown value {status!r}")
    delivered = word in _DELIVERED
    send_time = huawei_time(fields, "send_time")
    if send_time is None:
        raise domain.BodyError("required field 'send_time' is missing")
    return domain.SmsReport(
        biz_id=fields.required_text("task_id"),
        phone_number=fields.required_text("cust_flag"),
        success=delivered,
        send_time=send_time,
        report_time=huawei_time(fields, "receive_time"),
        err_code=None if delivered else status[:64],
        err_msg=_truncate(fields.text("send_status_desc"), 512),
        provider=domain.Provider.HUAWEI,
        message_id=fields.text("msg_id"),
        sign_name=fields.text("sms_sign"),
        template_code=fields.text("tpl_id"),
        shape=domain.ReportShape.KOOMESSAGE,
    )


def huawei_time(fields: domain.Fields, name: str) -> datetime | None:
    """``2022-06-01T09:00:49`` (the callback's example, no zone: read as UTC, like the
    send-details API's ``...Z`` times) or any ISO 8601 time with a zone."""
    value = fields.text(name)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise domain.BodyError(f"field {name!r}: {value!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return domain.to_utc(parsed)
    except ValueError as exc:
        raise domain.BodyError(f"field {name!r}: {exc}") from None


def _truncate(value: str | None, limit: int) -> str | None:
    return None if value is None else value[:limit]
