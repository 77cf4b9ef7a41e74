"""Time formats the Alibaba Cloud APIs use, in one place.

Alicom and Dysmsapi print times without a zone; they are China Standard Time. China has had no
daylight saving time since 1991, so a fixed UTC+08:00 offset is exact and needs no tz database.
"""

from __future__ import annotations

import datetime as dt
import time

CST = dt.timezone(dt.timedelta(hours=8), "CST")

#: `yyyy-MM-dd HH:mm:ss`: SmsReport send_time/report_time, QuerySendDetails dates, token times.
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
#: `yyyyMMddHHmmss`: SmsUp send_time.
COMPACT_FORMAT = "%Y%m%d%H%M%S"
#: `yyyyMMdd`: QuerySendDetails SendDate.
DATE_FORMAT = "%Y%m%d"


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def from_epoch(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def cst_text(moment: dt.datetime, fmt: str = DATETIME_FORMAT) -> str:
    """Format an aware datetime as China Standard Time."""
    local = moment.astimezone(CST)
    if fmt == DATETIME_FORMAT:  # the hot path when seeding many sends: skip strftime
        return (
            f"{local.year:04d}-{local.month:02d}-{local.day:02d} "
            f"{local.hour:02d}:{local.minute:02d}:{local.second:02d}"
        )
    return local.strftime(fmt)


def cst_date(moment: dt.datetime) -> str:
    """The `yyyyMMdd` China date of an instant (a send at 23:59 UTC is the next China day)."""
    local = moment.astimezone(CST)
    return f"{local.year:04d}{local.month:02d}{local.day:02d}"


def require_aware(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware")
    return moment


def http_date(seconds: float | None = None) -> str:
    """RFC 1123 date for the `Date` response header."""
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(seconds))
