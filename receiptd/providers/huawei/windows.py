"""Pure call planning for KooMessage send-details: which time windows to ask for, and how.

``GET /v1/aim/send-details`` pages with ``offset``/``limit`` but answers nothing past
``offset + limit > 10,000``. So receiptd never pages a window past that cap: it asks for the
first page, reads ``page_info.total``, and when the total exceeds the cap it splits the window
in two halves (recursively, down to one second) instead of paging on.

Windows are inclusive at both ends and whole seconds (the API's time format has no fractions);
halves are ``[begin, mid]`` and ``[mid + 1 s, end]`` so no detail is asked for twice.

No I/O here: :func:`walk` and :func:`collect` take the page fetcher as a function, so the
splitting logic is tested with tables and hypothesis (tests/unit/providers/huawei/test_windows.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from receiptd import ports
from receiptd.providers.huawei import matching

#: ``offset + limit`` must not exceed this, or the answer is an empty list.
RESULT_CAP = 10_000
#: The API's largest page.
PAGE_LIMIT = 100
#: The API answers for sends of the last year only.
RETENTION = timedelta(days=365)
#: Sends this close to the retention edge are expired rather than asked for.
EDGE = timedelta(hours=1)
#: A window never starts closer than this to the retention edge (tolerates clock skew).
EDGE_SLACK = timedelta(minutes=5)
#: The API refuses a longer task_id filter (400); no detail has a longer task id.
TASK_ID_MAX = 36
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_SECOND = timedelta(seconds=1)


@dataclass(frozen=True, slots=True, order=True)
class Window:
    """``[begin, end]``, both inclusive, whole seconds, UTC."""

    begin: datetime
    end: datetime

    def __post_init__(self) -> None:
        for moment in (self.begin, self.end):
            if moment.tzinfo is None or moment.microsecond:
                raise ValueError("window bounds must be aware and whole seconds")
        if self.begin > self.end:
            raise ValueError("window begin must not be after its end")

    @property
    def seconds(self) -> int:
        """How many distinct send_time values (seconds) the window holds."""
        return int((self.end - self.begin) / _SECOND) + 1

    def params(self) -> tuple[str, str]:
        return format_time(self.begin), format_time(self.end)


@dataclass(frozen=True, slots=True)
class Scope:
    """One window to ask for and the task ids of the claimed sends inside it."""

    window: Window
    task_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Query:
    """One API call: a window, optionally narrowed to one task, and a page."""

    window: Window
    task_id: str | None = None
    offset: int = 0
    limit: int = PAGE_LIMIT


@dataclass(frozen=True, slots=True)
class Page:
    details: tuple[matching.Detail, ...]
    total: int


Fetch = Callable[[Query], Page]


def format_time(moment: datetime) -> str:
    """``2019-10-12T07:20:50Z`` (the API's only accepted form)."""
    return utc(moment).strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime:
    """The API's ``...Z`` time to an aware UTC datetime, or ValueError."""
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)


def utc(moment: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already (database rows)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def floor_second(moment: datetime) -> datetime:
    return utc(moment).replace(microsecond=0)


def ceil_second(moment: datetime) -> datetime:
    floored = floor_second(moment)
    return floored if floored == utc(moment) else floored + _SECOND


def oldest_queryable(now: datetime) -> datetime:
    """The earliest begin_time receiptd asks for: a year back, plus some slack."""
    return ceil_second(utc(now) - RETENTION + EDGE_SLACK)


def queryable(sent_at: datetime, now: datetime) -> bool:
    """Whether the API can still answer for a send (else it expires without a call)."""
    return utc(sent_at) >= utc(now) - RETENTION + EDGE


def cover(
    sends: Iterable[ports.PendingSend], now: datetime, before: timedelta, after: timedelta
) -> tuple[Scope, ...]:
    """Merged windows ``[sent_at - before, sent_at + after]`` over the sends, clamped to what
    the API answers for (the last year, up to ``now``); sends outside it get no window.

    ``before`` allows for clock differences, ``after`` for the provider's queueing delay.
    """
    lowest, highest = oldest_queryable(now), ceil_second(now)
    spans: list[tuple[datetime, datetime, str]] = []
    for send in sends:
        begin = max(floor_second(send.sent_at - before), lowest)
        end = min(ceil_second(send.sent_at + after), highest)
        if begin <= end:
            spans.append((begin, end, send.biz_id))
    spans.sort()
    scopes: list[Scope] = []
    current: list[tuple[datetime, datetime, str]] = []
    for span in spans:
        if current and span[0] > max(s[1] for s in current) + _SECOND:
            scopes.append(_scope(current))
            current = []
        current.append(span)
    if current:
        scopes.append(_scope(current))
    return tuple(scopes)


def _scope(spans: Sequence[tuple[datetime, datetime, str]]) -> Scope:
    window = Window(min(s[0] for s in spans), max(s[1] for s in spans))
    return Scope(window, tuple(sorted({s[2] for s in spans})))


def split(window: Window) -> tuple[Window, Window] | None:
    """Two halves ``[begin, mid]`` and ``[mid + 1 s, end]``; None for a one-second window."""
    if window.begin == window.end:
        return None
    mid = window.begin + (window.seconds - 1) // 2 * _SECOND
    return Window(window.begin, mid), Window(mid + _SECOND, window.end)


def pages(
    total: int, limit: int = PAGE_LIMIT, cap: int = RESULT_CAP
) -> tuple[tuple[int, int], ...]:
    """(offset, limit) of every page that reads ``total`` rows without passing the cap.

    Always at least one page (the first tells the total). Rows past the cap are not reachable
    by paging; :func:`walk` splits such a window instead.
    """
    if not 1 <= limit <= min(PAGE_LIMIT, cap):
        raise ValueError(f"limit must be 1..{min(PAGE_LIMIT, cap)}")
    reachable = max(1, min(total, cap))
    return tuple((offset, min(limit, cap - offset)) for offset in range(0, reachable, limit))


def calls_needed(total: int, limit: int = PAGE_LIMIT) -> int:
    """A lower bound on the calls that read ``total`` rows in one unfiltered scope."""
    return max(1, math.ceil(total / limit))


@dataclass(frozen=True, slots=True)
class Paging:
    """The API's paging limits; tests shrink them to exercise splitting with small data."""

    limit: int = PAGE_LIMIT
    cap: int = RESULT_CAP


API_PAGING = Paging()


def walk(
    window: Window,
    task_id: str | None,
    fetch: Fetch,
    first: Page | None = None,
    paging: Paging = API_PAGING,
) -> Iterator[matching.Detail]:
    """Every detail of the window (optionally of one task), page by page.

    A window whose total passes the cap is split in halves until each half fits; a one-second
    window that still does not fit yields what the cap lets through (the rest stays pending).
    ``first`` is the window's first page when the caller already has it.
    """
    stack: list[tuple[Window, Page | None]] = [(window, first)]
    while stack:
        current, page = stack.pop()
        if page is None:
            page = fetch(Query(current, task_id, 0, paging.limit))
        halves = split(current) if page.total > paging.cap else None
        if halves is not None:
            stack.extend((half, None) for half in reversed(halves))
            continue
        yield from page.details
        for offset, limit in pages(page.total, paging.limit, paging.cap)[1:]:
            yield from fetch(Query(current, task_id, offset, limit)).details


def collect(scope: Scope, fetch: Fetch, paging: Paging = API_PAGING) -> Iterator[matching.Detail]:
    """Every detail that can answer for the scope's sends, in as few calls as planned.

    The first, unfiltered page tells the window's total. When the scope's tasks are fewer than
    the pages the whole window would take, each task is read on its own (``task_id`` filter);
    otherwise the whole window is read. Details seen twice are de-duplicated by the matcher.
    """
    first = fetch(Query(scope.window, None, 0, paging.limit))
    tasks = [t for t in scope.task_ids if len(t) <= TASK_ID_MAX]  # longer ones match nothing
    whole = first.total <= len(first.details) or not narrow(len(tasks), first.total, paging)
    if whole:
        yield from walk(scope.window, None, fetch, first, paging)
        return
    yield from first.details
    for task_id in tasks:
        yield from walk(scope.window, task_id, fetch, None, paging)


def narrow(task_count: int, total: int, paging: Paging = API_PAGING) -> bool:
    """Whether asking task by task is expected to take fewer calls than the whole window."""
    return task_count < calls_needed(total, paging.limit) - 1
