"""`receiptd report`'s arithmetic, pure: the window, the groups, shares, percentiles, the table.

The database side (receiptd.db.report) reads two things within the window: per-group send
counts (:class:`Tally`) and the delivery times of receipts (:class:`Receipt`, at most a sample
of them). This module turns them into one :class:`Group` per key of ``--by`` and prints them
(docs/report.md).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from receiptd import domain, error_families

BY = ("day", "provider", "account", "template", "sign", "code")
NONE = "-"  # the key of sends without the grouped value (no template, not failed, …)
TOTAL = "all"
STATUSES = tuple(s.value for s in domain.SendStatus)
SETTLED_BY = tuple(s.value for s in domain.SettledBy)
_FAILED = domain.SendStatus.FAILED.value

_WINDOW = re.compile(r"([1-9]\d{0,4})([mhdw])")
_UNIT = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
_UNIT["w"] = timedelta(weeks=1)


def parse_window(value: str) -> timedelta:
    """``--since``: a whole number of minutes, hours, days or weeks (``90m``, ``1h``, ``7d``,
    ``30d``, ``2w``). Anything else raises ``ValueError`` saying what is accepted."""
    match = _WINDOW.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a window: expected e.g. 90m, 1h, 7d, 30d or 2w")
    return int(match.group(1)) * _UNIT[match.group(2)]


@dataclass(frozen=True, slots=True)
class Tally:
    """Sends of one (grouped value, status, settled_by): a row of the counting query.
    ``value`` is the ``--by`` column (``err_code`` for ``code``, the ISO send date for
    ``day``)."""

    value: str | None
    status: str
    settled_by: str | None
    sends: int


@dataclass(frozen=True, slots=True)
class Receipt:
    """One receipt's delivery time. ``value`` is the ``--by`` column (``err_code`` for
    ``code``; unused for ``day``, which is the provider-local day of ``send_time``)."""

    value: str | None
    success: bool
    send_time: datetime
    report_time: datetime

    @property
    def seconds(self) -> float:
        return (self.report_time - self.send_time).total_seconds()


@dataclass(frozen=True, slots=True)
class Latency:
    """Delivery time percentiles (nearest rank) over ``samples`` receipts; None without any."""

    p50: float | None
    p90: float | None
    samples: int


@dataclass(frozen=True, slots=True)
class Group:
    key: str
    statuses: Mapping[str, int]  # every SendStatus value
    settled_by: Mapping[str, int]  # every SettledBy value
    latency: Latency

    @property
    def sends(self) -> int:
        return sum(self.statuses.values())

    @property
    def settled(self) -> int:
        return sum(self.settled_by.values())

    def shares(self) -> dict[str, float | None]:
        """Status shares of all sends; receipt, query and expiry (window + horizon) shares of
        the settled ones. None where there is nothing to divide."""
        by = self.settled_by
        expiry = by[domain.SettledBy.WINDOW.value] + by[domain.SettledBy.HORIZON.value]
        out = {s: _share(n, self.sends) for s, n in self.statuses.items()}
        out["receipt"] = _share(by[domain.SettledBy.RECEIPT.value], self.settled)
        out["query"] = _share(by[domain.SettledBy.QUERY.value], self.settled)
        out["expiry"] = _share(expiry, self.settled)
        return out


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def tally_key(by: str, tally: Tally) -> str:
    """The group of a tally: its value; for ``code`` the error family of a failed send's code
    (receiptd.error_families), ``-`` for every send that did not fail."""
    if by == "code":
        if tally.status != _FAILED:
            return NONE
        return error_families.family(tally.value)
    return NONE if tally.value is None else tally.value


def receipt_key(by: str, receipt: Receipt, tz: tzinfo) -> str:
    """The group of a receipt, as :func:`tally_key`; for ``day`` the provider-local (``tz``)
    day of its ``send_time``, the day ``sms_send.send_date`` holds for its send."""
    if by == "day":
        return receipt.send_time.astimezone(tz).date().isoformat()
    if by == "code":
        if receipt.success:
            return NONE
        return error_families.family(receipt.value)
    return NONE if receipt.value is None else receipt.value


def percentile(ordered: Sequence[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile of ascending ``ordered``: a value that occurred."""
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def latency(seconds: Iterable[float]) -> Latency:
    ordered = sorted(seconds)
    return Latency(percentile(ordered, 50), percentile(ordered, 90), len(ordered))


def groups(
    by: str, tallies: Iterable[Tally], receipts: Iterable[Receipt], tz: tzinfo
) -> list[Group]:
    """One group per key seen in either input, in key order."""
    return _grouped(
        [(tally_key(by, t), t) for t in tallies],
        [(receipt_key(by, r, tz), r.seconds) for r in receipts],
    )


def overall(tallies: Iterable[Tally], receipts: Iterable[Receipt]) -> Group:
    """Every send and receipt as one group, ``all`` (the table's last line)."""
    found = _grouped([(TOTAL, t) for t in tallies], [(TOTAL, r.seconds) for r in receipts])
    return found[0] if found else _group(TOTAL, {}, {}, [])


def _grouped(tallies: list[tuple[str, Tally]], seconds: list[tuple[str, float]]) -> list[Group]:
    statuses: dict[str, dict[str, int]] = {}
    settled: dict[str, dict[str, int]] = {}
    for key, t in tallies:
        counts = statuses.setdefault(key, {})
        counts[t.status] = counts.get(t.status, 0) + t.sends
        ways = settled.setdefault(key, {})
        if t.settled_by is not None:
            ways[t.settled_by] = ways.get(t.settled_by, 0) + t.sends
    times: dict[str, list[float]] = {}
    for key, value in seconds:
        times.setdefault(key, []).append(value)
    return [
        _group(key, statuses.get(key, {}), settled.get(key, {}), times.get(key, []))
        for key in sorted({*statuses, *times})
    ]


def _group(
    key: str, statuses: Mapping[str, int], settled_by: Mapping[str, int], seconds: list[float]
) -> Group:
    return Group(
        key,
        {s: statuses.get(s, 0) for s in STATUSES},
        {s: settled_by.get(s, 0) for s in SETTLED_BY},
        latency(seconds),
    )


def as_json(by: str, found: Sequence[Group]) -> list[dict[str, Any]]:
    """``--json``: one object per group, the key under the ``--by`` name."""
    return [
        {
            by: g.key,
            "sends": g.sends,
            **g.statuses,
            "settled_by": dict(g.settled_by),
            "shares": {k: None if v is None else round(v, 4) for k, v in g.shares().items()},
            "delivery_seconds": {
                "p50": g.latency.p50,
                "p90": g.latency.p90,
                "samples": g.latency.samples,
            },
        }
        for g in found
    ]


# --- the table -------------------------------------------------------------------------------

_SHARES = ("delivered", "failed", "expired", "pending", "receipt", "query", "expiry")
_HEADER = ("sends", "delivered", "failed", "expired", "pending", "by receipt", "by query")
_HEADER_LATENCY = ("by expiry", "p50", "p90", "timed")


def table(by: str, found: Sequence[Group], total: Group) -> list[str]:
    """The groups as aligned columns (key left, numbers right), then the ``all`` line."""
    if not found:
        return ["no sends or receipts in the window"]
    rows = [[by, *_HEADER, *_HEADER_LATENCY], *(_cells(g) for g in found), _cells(total)]
    widths = [max(width(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            _pad(cell, w, left=i == 0) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def width(text: str) -> int:
    """Terminal columns: wide and full-width characters (a Chinese sign name) take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(cell: str, columns: int, *, left: bool) -> str:
    fill = " " * (columns - width(cell))
    return cell + fill if left else fill + cell


def _cells(g: Group) -> list[str]:
    shares = g.shares()
    return [
        g.key,
        str(g.sends),
        *(_percent(shares[name]) for name in _SHARES),
        duration(g.latency.p50),
        duration(g.latency.p90),
        str(g.latency.samples),
    ]


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.1f}%"


def duration(seconds: float | None) -> str:
    """``4.0s``, ``12m05s``, ``3h02m``; ``-`` for none."""
    if seconds is None:
        return "-"
    whole = round(abs(seconds))
    sign = "-" if seconds < 0 else ""
    if abs(seconds) < 60:
        return f"{seconds:.1f}s"
    if whole < 3600:
        return f"{sign}{whole // 60}m{whole % 60:02d}s"
    return f"{sign}{whole // 3600}h{whole % 3600 // 60:02d}m"


def caption(since: datetime, window: str, timed: int, sampled: bool) -> list[str]:
    """The lines above the table: what was counted and what was timed."""
    how = f"a sample of {timed}" if sampled else f"all {timed}"
    return [
        f"window {window}, since {since:%Y-%m-%d %H:%M} UTC: sends settled in it, and sends "
        "made in it still pending",
        f"delivery time (report_time - send_time): {how} receipts received in it",
    ]
