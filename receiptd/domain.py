"""The pure core: receipt values, body decoding, time zones and the send status rules.

Nothing here does I/O. Every malformed input raises :class:`BodyError` (a ``ValueError``) whose
message says what is wrong, so the consumer can dead-letter exactly that message.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

CHINA_TZ = ZoneInfo("Asia/Shanghai")
ALIYUN_QUERY_WINDOW_DAYS = 30
_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y%m%d%H%M%S")
# Longest value per field, matching the columns (receiptd.db.models); longer is malformed.
_MAX_LENGTH = {"biz_id": 64, "phone_number": 32, "out_id": 128, "err_code": 64, "err_msg": 512}
_MAX_LENGTH.update(dest_code=64, sequence_id=64, content=65536)
_MAX_LENGTH.update(message_id=64, sign_name=64, template_code=64)
# KooMessage callbacks: cust_flag is stored as phone_number; the description is truncated.
_MAX_LENGTH.update(cust_flag=32, send_status_desc=4096)
# The international shapes (receiptd.receipt_shapes): TaskId is up to 255 characters at send.
_MAX_LENGTH.update(to=32, To=32, MessageId=64, TaskId=255, task_id=255, ErrorCode=64)
_MAX_LENGTH.update(error_code=64, error_description=512, ErrorDescription=512)
_DEFAULT_MAX_LENGTH = 64


class BodyError(ValueError):
    """A queue message body that cannot become a typed receipt."""


class MessageType(enum.StrEnum):
    REPORT = "SmsReport"
    UP = "SmsUp"
    GLOBE_REPORT = "GlobeSmsReport"  # the China site's receipts of international sends

    @property
    def is_receipt(self) -> bool:
        """A delivery receipt (either report queue), not a reply."""
        return self is not MessageType.UP

    @property
    def label(self) -> str:
        """The short name in loop names, metric labels and the CLI (``consume --kind``)."""
        return _KIND_LABELS[self]


_KIND_LABELS = {MessageType.REPORT: "report", MessageType.UP: "up"}
_KIND_LABELS[MessageType.GLOBE_REPORT] = "globe"


class SendKey(enum.StrEnum):
    """Which of the provider's ids a send and its receipts are matched by (with the number):
    the ``BizId`` of SendSms (2017-05-25), or the ``MessageId`` of SendMessageToGlobe and its
    siblings (2018-05-01). Both are stored in the ``biz_id`` column (docs/international.md)."""

    BIZ_ID = "biz_id"
    MESSAGE_ID = "message_id"


class ReportShape(enum.StrEnum):
    """Which body a receipt came in (docs/international.md, "Three receipt shapes")."""

    SMS_REPORT = "sms_report"  # China site, SmsReport: snake_case, biz_id
    GLOBE_SMS_REPORT = "globe_sms_report"  # China site, GlobeSmsReport: snake_case, message_id
    INTL_SMS_REPORT = "intl_sms_report"  # international site, SmsReport: PascalCase, MessageId
    KOOMESSAGE = "koomessage"  # Huawei's AIM send status


class SendStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    EXPIRED = "expired"

    @property
    def is_final(self) -> bool:
        """Settled: the compensator no longer looks this send up."""
        return self is not SendStatus.PENDING

    @property
    def is_conclusive(self) -> bool:
        """The provider's own verdict (delivered/failed): never changes again. ``expired`` is
        receiptd's verdict and gives way to a later receipt or query result."""
        return self in (SendStatus.DELIVERED, SendStatus.FAILED)


class SettledBy(enum.StrEnum):
    RECEIPT = "receipt"
    QUERY = "query"
    WINDOW = "window"  # past the provider's query window: expired without a call
    HORIZON = "horizon"  # still pending after its last query at the status horizon


# The account the single-account settings define (``[aliyun]``, ``[huawei]``); every row
# written before accounts existed belongs to it (migration 0005). receiptd.config holds
# the same name (the settings may not import the domain).
DEFAULT_ACCOUNT = "default"


class Provider(enum.StrEnum):
    ALIYUN = "aliyun"
    HUAWEI = "huawei"


class Channel(enum.StrEnum):
    """How a receipt reached receiptd: read from an MNS queue, or pushed over HTTP."""

    MNS = "mns"
    PUSH = "push"


class DeliveryStatus(enum.StrEnum):
    """Where one webhook delivery of an event stands (``event_delivery.status``)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class SmsReport:
    """A delivery receipt (SmsReport body). Times are UTC."""

    biz_id: str  # the send's id: its BizId, or its MessageId when ``matched_by`` says so
    phone_number: str
    success: bool
    send_time: datetime
    out_id: str | None = None
    report_time: datetime | None = None
    err_code: str | None = None
    err_msg: str | None = None
    sms_size: int | None = None
    # Only some channels carry these (push's newer field set, KooMessage callbacks).
    provider: Provider = Provider.ALIYUN
    message_id: str | None = None
    sign_name: str | None = None
    template_code: str | None = None
    matched_by: SendKey = SendKey.BIZ_ID
    shape: ReportShape = ReportShape.SMS_REPORT
    task_id: str | None = None  # the international site echoes the send's TaskId

    @property
    def status(self) -> SendStatus:
        return SendStatus.DELIVERED if self.success else SendStatus.FAILED


@dataclass(frozen=True, slots=True)
class SmsUp:
    """An inbound reply (SmsUp body). ``send_time`` is UTC."""

    phone_number: str
    content: str
    send_time: datetime
    dest_code: str
    sequence_id: str
    sign_name: str | None = None  # some pushed SmsUp pages add it


def decode_json_body(raw: str | bytes) -> dict[str, Any]:
    """base64 → UTF-8 → JSON object, as Alicom encodes every queue body."""
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise BodyError("body is not valid base64") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError("decoded body is not UTF-8") from None
    obj = load_json(text, "decoded body")
    if not isinstance(obj, dict):
        raise BodyError(f"decoded body is a JSON {type(obj).__name__}, not an object")
    return obj


def load_json(text: str, what: str = "body") -> Any:
    """JSON text to a value; every way it can fail is a BodyError naming the reason.

    Well-formed JSON can still be unreadable: an integer of more than 4,300 digits raises a
    plain ``ValueError`` (CPython's integer-conversion limit, ``sys.get_int_max_str_digits``)
    and deep nesting a ``RecursionError``; neither is a ``JSONDecodeError``.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BodyError(f"{what} is not JSON: {exc.msg} at {exc.pos}") from None
    except RecursionError:
        raise BodyError(f"{what} is not JSON: nested too deeply") from None
    except ValueError as exc:  # the integer-digit limit
        raise BodyError(f"{what} is not readable JSON: {str(exc).split(';')[0]}") from None


def to_utc(local: datetime) -> datetime:
    """An aware time in UTC; ValueError (not OverflowError) when UTC has no such year: year 1
    east of Greenwich, year 9999 west of it."""
    try:
        return local.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{local.isoformat()} is out of range in UTC") from None


def parse_provider_time(value: str, tz: tzinfo = CHINA_TZ) -> datetime:
    """A zone-less provider time (either Alicom format) read in ``tz`` and returned in UTC."""
    text = value.strip()
    # Fast path for the exact "yyyy-MM-dd HH:mm:ss" every receipt carries: fromisoformat is
    # C code, strptime (below: every other spelling strptime accepts, and the error) is not.
    if len(text) == 19 and text[4::3] == "-- ::" and text.isascii():
        try:
            local = datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            return to_utc(local.replace(tzinfo=tz))
    for fmt in _TIME_FORMATS:
        try:
            # The provider's times carry no zone; it is attached below.
            local = datetime.strptime(value.strip(), fmt)  # noqa: DTZ007
        except ValueError:
            continue
        return to_utc(local.replace(tzinfo=tz))
    raise ValueError(f"{value!r} is not 'yyyy-MM-dd HH:mm:ss' or 'yyyyMMddHHmmss'")


class Fields:
    """Typed access to a decoded body; every failure names the field."""

    def __init__(self, data: Mapping[str, Any], tz: tzinfo) -> None:
        self._data = data
        self._tz = tz

    def text(self, name: str) -> str | None:
        value = self._data.get(name)
        # A plain str (what JSON decodes to) skips the type checks: a receipt reads a dozen
        # fields, and these checks were most of the decoder's time.
        if type(value) is str:
            text = value
        elif value is None:
            return None
        elif isinstance(value, bool) or not isinstance(value, str | int):
            raise BodyError(f"field {name!r} must be a string, got {type(value).__name__}")
        else:
            text = str(value)
        if not text:
            return None
        limit = _MAX_LENGTH.get(name, _DEFAULT_MAX_LENGTH)
        if len(text) > limit:
            raise BodyError(f"field {name!r} is longer than {limit} characters")
        if not text.isascii():
            _check_unicode(name, text)
        return text

    def required_text(self, name: str) -> str:
        value = self.text(name)
        if value is None:
            raise BodyError(f"required field {name!r} is missing")
        return value

    def required_time(self, name: str) -> datetime:
        value = self.time(name)
        if value is None:
            raise BodyError(f"required field {name!r} is missing")
        return value

    def time(self, name: str) -> datetime | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            return parse_provider_time(value, self._tz)
        except ValueError as exc:
            raise BodyError(f"field {name!r}: {exc}") from None

    def boolean(self, name: str) -> bool:
        value = self._data.get(name)
        if isinstance(value, bool):
            return value
        if value is None:
            raise BodyError(f"required field {name!r} is missing")
        raise BodyError(f"field {name!r} must be a boolean, got {type(value).__name__}")

    def count(self, name: str) -> int | None:
        value = self.text(name)
        if value is None:
            return None
        if not value.isascii() or not value.isdigit() or len(value) > 6:
            raise BodyError(f"field {name!r} must be a small whole number, got {value!r}")
        return int(value)


def _check_unicode(name: str, text: str) -> None:
    """JSON may spell a lone surrogate (``"\\ud800"``); no database can store it as text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BodyError(
            f"field {name!r} holds a lone surrogate (U+{ord(text[exc.start]):04X}), "
            "not Unicode text"
        ) from None


def printable(text: str, limit: int = 2000) -> str:
    """``text`` as any database stores it: lone surrogates and NUL (PostgreSQL text cannot
    hold it) backslash-escaped, cut to ``limit`` characters. For reasons and log fields,
    never for data."""
    if not text.isascii() or "\x00" in text:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_report(raw: str | bytes, tz: tzinfo = CHINA_TZ) -> SmsReport:
    """A raw SmsReport queue body to a typed receipt, or BodyError."""
    return report_from_fields(decode_json_body(raw), tz)


def report_from_fields(data: Mapping[str, Any], tz: tzinfo = CHINA_TZ) -> SmsReport:
    """A decoded SmsReport object (queue body or pushed element) to a typed receipt."""
    fields = Fields(data, tz)
    send_time = fields.required_time("send_time")
    return SmsReport(
        biz_id=fields.required_text("biz_id"),
        phone_number=normalize_phone(fields.text("phone_number") or ""),
        success=fields.boolean("success"),
        send_time=send_time,
        out_id=fields.text("out_id"),
        report_time=fields.time("report_time"),
        err_code=fields.text("err_code"),
        err_msg=fields.text("err_msg"),
        sms_size=fields.count("sms_size"),
        message_id=fields.text("message_id"),
        sign_name=fields.text("sign_name"),
        template_code=fields.text("template_code"),
    )


def parse_up(raw: str | bytes, tz: tzinfo = CHINA_TZ) -> SmsUp:
    """A raw SmsUp queue body to a typed reply, or BodyError."""
    return up_from_fields(decode_json_body(raw), tz)


def up_from_fields(data: Mapping[str, Any], tz: tzinfo = CHINA_TZ) -> SmsUp:
    """A decoded SmsUp object (queue body or pushed element) to a typed reply."""
    fields = Fields(data, tz)
    send_time = fields.required_time("send_time")
    return SmsUp(
        phone_number=normalize_phone(fields.text("phone_number") or ""),
        content=fields.required_text("content"),
        send_time=send_time,
        dest_code=fields.required_text("dest_code"),
        sequence_id=fields.required_text("sequence_id"),
        sign_name=fields.text("sign_name"),
    )


def encode_body(fields: Mapping[str, Any]) -> str:
    """The inverse of :func:`decode_json_body`: how Alicom puts a body on the queue."""
    return base64.b64encode(json.dumps(fields, ensure_ascii=False).encode("utf-8")).decode()


# --- send status rules ---------------------------------------------------------------------


def next_status(current: SendStatus, observed: SendStatus) -> SendStatus:
    """Monotonic: delivered/failed never change; pending moves to whatever was observed;
    expired (receiptd's verdict) moves only to the provider's delivered/failed.

    The store enforces the same rule in SQL (every settling UPDATE matches ``status =
    'pending'``, or ``'expired'`` for a delivered/failed result), so concurrent writers cannot
    race past it.
    """
    if current is SendStatus.PENDING:
        return observed
    if current is SendStatus.EXPIRED and observed.is_conclusive:
        return observed
    return current


def provider_send_date(sent_at: datetime, tz: tzinfo = CHINA_TZ) -> date:
    """The provider's calendar date of a send (23:59 UTC on day D is D+1 in China)."""
    if sent_at.tzinfo is None:
        raise ValueError("sent_at must be timezone-aware")
    return sent_at.astimezone(tz).date()


def in_query_window(
    send_date: date, now: datetime, tz: tzinfo = CHINA_TZ, days: int = ALIYUN_QUERY_WINDOW_DAYS
) -> bool:
    """QuerySendDetails accepts a SendDate from today back ``days`` days (provider dates)."""
    today = now.astimezone(tz).date()
    return today - timedelta(days=days) <= send_date <= today


def backoff_delay(check_count: int, base: float = 300.0, cap: float = 6 * 3600.0) -> float:
    """Seconds until a still-pending send is queried again: doubles per check, capped."""
    return float(min(cap, base * 2 ** min(check_count, 30)))


_MAINLAND_WITH_PREFIX = re.compile(r"(?:\+86|0086|86)(1\d{10})")


def normalize_phone(number: str) -> str:
    """Mainland numbers in the 11-digit form receipts carry: +86/0086/86 prefixes dropped.

    SendSms accepts the prefixed forms, but SmsReport, SmsUp and QuerySendDetails answer with
    11 digits; a send registered with a prefix would never match its receipt. Anything else
    is kept verbatim.
    """
    match = _MAINLAND_WITH_PREFIX.fullmatch(number)
    return match.group(1) if match else number


def normalize_globe_phone(number: str) -> str:
    """An international number as the provider writes it: country code and digits, no ``+``
    or ``00`` prefix, no spaces or dashes (``+852 1234-5678`` → ``85212345678``). Numbers of
    MessageId sends are stored and compared in this form; anything that is not a number after
    that is kept verbatim (it matches nothing)."""
    digits = number.strip().replace(" ", "").replace("-", "")
    digits = digits.removeprefix("+")
    if digits.startswith("00"):
        digits = digits[2:]
    return digits if digits.isascii() and digits.isdigit() else number


def may_be_mainland(number: str) -> bool:
    """Whether SendMessageToGlobe could refuse ``number`` as a mainland one: ``86`` and 11
    digits from 1, or a bare 11 digits from 1 (which a North American number also is)."""
    digits = normalize_globe_phone(number)
    return bool(_MAINLAND_WITH_PREFIX.fullmatch(digits)) or (
        len(digits) == 11 and digits.startswith("1")
    )


def normalize_number(number: str, matched_by: SendKey) -> str:
    """The stored form of a send's number: mainland rules for BizId sends, the provider's
    international form for MessageId sends (their receipts write ``8613812345678``)."""
    if matched_by is SendKey.MESSAGE_ID:
        return normalize_globe_phone(number)
    return normalize_phone(number)


def mask_phone(number: str) -> str:
    """Keep the first 3 and last 4 digits: 13812345678 → 138****5678."""
    if len(number) <= 7:
        return "*" * len(number)
    return f"{number[:3]}{'*' * (len(number) - 7)}{number[-4:]}"
