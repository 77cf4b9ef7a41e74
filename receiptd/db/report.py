"""The reads behind ``receiptd report``, each bounded by the window (docs/report.md).

* **Send counts, exact**: one ``GROUP BY`` over the sends settled in the window (a range of
  ``ix_sms_send_settled_at``) and one over the pending sends sent in it (the
  ``status, provider, account, sent_at`` index, pending entries only). The rows read are the
  window's settled sends and today's pending ones, never the table.
* **Delivery times, bounded**: ``report_time - send_time`` of the receipts received in the
  window, at most ``limit`` of them. The window's receipts are read by their ``received_at``
  range, at most ``limit + 1`` rows: when they fit, that is every one of them. When they do
  not, a sample: the window's first and last receipt by ``received_at`` (two index probes)
  bound its ids — ids grow with ``received_at``: a receipt row is inserted once, at arrival,
  and never rewritten — and ``limit`` ids drawn at random between them (a fixed seed, so the
  same database gives the same report) are read by primary key, 500 a statement. Ids that no
  longer exist (an insert that lost a race, a pruned row) leave the sample smaller. A uniform
  sample of 10,000 puts the p50 and p90 within about a percentile rank of the exact ones
  whatever the window's size; the cost stays at most twice ``limit`` rows.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Select, and_, func, null, select

from receiptd import domain, reporting
from receiptd.db.models import REPORT, SEND

LIMIT = 10_000  # receipts timed at most per report
SEED = 25  # the sample's: the same database gives the same report
_CHUNK = 500
_PENDING = domain.SendStatus.PENDING.value
_ALIYUN = domain.Provider.ALIYUN.value  # sms_report.provider NULL: a row from before 0003


@dataclass(frozen=True, slots=True)
class Window:
    """``since`` ≤ t ≤ ``until``, of one account or (None) every account."""

    since: datetime
    until: datetime
    account: str | None = None


@dataclass(frozen=True, slots=True)
class Reading:
    tallies: list[reporting.Tally]
    receipts: list[reporting.Receipt]
    sampled: bool  # the receipts are a sample of the window's, not all of them


def read(conn: Connection, by: str, window: Window, limit: int = LIMIT) -> Reading:
    receipts, sampled = delivery_times(conn, by, window, limit)
    return Reading(tallies(conn, by, window), receipts, sampled)


# --- sends -----------------------------------------------------------------------------------

_SEND_VALUE = {
    "day": SEND.c.send_date,  # the provider's calendar day of sent_at, written at registration
    "provider": SEND.c.provider,
    "account": SEND.c.account,
    "template": SEND.c.template_code,
    "sign": SEND.c.sign_name,
    "code": SEND.c.err_code,
}


def tallies(conn: Connection, by: str, window: Window) -> list[reporting.Tally]:
    """Sends per (``--by`` value, status, settled_by): settled in the window, or pending and
    sent in it."""
    settled = _in_range(SEND.c.settled_at, window)
    pending = and_(SEND.c.status == _PENDING, _in_range(SEND.c.sent_at, window))
    return [tally for where in (settled, pending) for tally in _count(conn, by, where, window)]


def _count(conn: Connection, by: str, where: Any, window: Window) -> Iterator[reporting.Tally]:
    cols = (_SEND_VALUE[by].label("value"), SEND.c.status, SEND.c.settled_by)
    query = select(*cols, func.count().label("n")).where(where).group_by(*cols)
    if window.account is not None:
        query = query.where(SEND.c.account == window.account)
    for row in conn.execute(query):
        yield reporting.Tally(_text(row.value), row.status, row.settled_by, int(row.n))


def _text(value: str | date | None) -> str | None:
    return value.isoformat() if isinstance(value, date) else value


# --- receipts --------------------------------------------------------------------------------

# A receipt's send (the unique key of sms_send), for the send's template and sign.
_ITS_SEND = and_(
    SEND.c.provider == func.coalesce(REPORT.c.provider, _ALIYUN),
    SEND.c.account == REPORT.c.account,
    SEND.c.matched_by == REPORT.c.matched_by,
    SEND.c.biz_id == REPORT.c.biz_id,
    SEND.c.phone_number == REPORT.c.phone_number,
)
_RECEIPT_VALUE = {
    "day": None,  # the provider's day of send_time: reporting.receipt_key
    "provider": func.coalesce(REPORT.c.provider, _ALIYUN),
    "account": REPORT.c.account,
    # The send's (a pushed receipt may carry its own too: the fallback).
    "template": func.coalesce(SEND.c.template_code, REPORT.c.template_code),
    "sign": func.coalesce(SEND.c.sign_name, REPORT.c.sign_name),
    "code": REPORT.c.err_code,
}


def delivery_times(
    conn: Connection, by: str, window: Window, limit: int = LIMIT
) -> tuple[list[reporting.Receipt], bool]:
    """The timed receipts received in the window (all, or a sample of at most ``limit``), and
    whether they are a sample."""
    query = _receipts(by, window)
    every = _receipts_of(conn, query.limit(limit + 1))
    if len(every) <= limit:
        return every, False
    bounds = _id_bounds(conn, window)
    if bounds is None:  # emptied since the first read
        return [], False
    first, last = bounds
    ids = sorted(random.Random(SEED).sample(range(first, last + 1), min(limit, last - first + 1)))
    found = [r for c in _chunks(ids) for r in _receipts_of(conn, query.where(REPORT.c.id.in_(c)))]
    return found, True


def _id_bounds(conn: Connection, window: Window) -> tuple[int, int] | None:
    """The ids of the window's first and last receipt by ``received_at`` (index probes)."""
    inside = select(REPORT.c.id).where(_in_range(REPORT.c.received_at, window)).limit(1)
    first = conn.execute(inside.order_by(REPORT.c.received_at)).scalar()
    last = conn.execute(inside.order_by(REPORT.c.received_at.desc())).scalar()
    if first is None or last is None:
        return None
    return min(first, last), max(first, last)


def _receipts(by: str, window: Window) -> Select[Any]:
    value = _RECEIPT_VALUE[by]
    cols = [REPORT.c.success, REPORT.c.send_time, REPORT.c.report_time]
    query = select(*cols, (null() if value is None else value).label("value"))
    if by in ("template", "sign"):
        query = query.select_from(REPORT.outerjoin(SEND, _ITS_SEND))
    query = query.where(_in_range(REPORT.c.received_at, window), REPORT.c.report_time.is_not(None))
    if window.account is not None:
        query = query.where(REPORT.c.account == window.account)
    return query


def _receipts_of(conn: Connection, query: Select[Any]) -> list[reporting.Receipt]:
    return [
        reporting.Receipt(row.value, bool(row.success), row.send_time, row.report_time)
        for row in conn.execute(query)
    ]


def _in_range(column: Any, window: Window) -> Any:
    return and_(column >= window.since, column <= window.until)


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]
