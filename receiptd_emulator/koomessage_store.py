"""The emulated KooMessage's data: send details, indexed by send_time overall and per task.

A query bisects to its time window, so a day of more than 10,000 details stays cheap; only the
requested page is read unless filters other than task_id apply.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import itertools
import random
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True, slots=True)
class SendDetail:
    """One ``AIMSendDetail``; ``send_status`` is ``success`` | ``fail`` | ``sending``."""

    msg_id: str
    task_id: str
    cust_flag: str
    send_time: dt.datetime
    send_status: str = "sending"
    tpl_id: str = "600000001"
    sms_sign: str = "receiptd"
    send_account: str = ""
    receive_time: dt.datetime | None = None
    result_code: str | None = None
    task_name: str = "receiptd"
    tpl_name: str = "receiptd"

    def as_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["send_account"] = self.send_account or self.cust_flag
        out["send_time"] = format_time(self.send_time)
        out["receive_time"] = format_time(self.receive_time) if self.receive_time else None
        return out


class _Index:
    """Details sorted by (send_time, arrival): bisect finds a window in O(log n)."""

    def __init__(self) -> None:
        self.keys: list[tuple[float, int]] = []
        self.msg_ids: list[str] = []

    def add(self, key: tuple[float, int], msg_id: str) -> None:
        if not self.keys or key >= self.keys[-1]:  # chronological seeding: append
            self.keys.append(key)
            self.msg_ids.append(msg_id)
            return
        at = bisect.bisect_right(self.keys, key)
        self.keys.insert(at, key)
        self.msg_ids.insert(at, msg_id)

    def bounds(self, begin: float, end: float) -> tuple[int, int]:
        return bisect.bisect_left(self.keys, (begin, -1)), bisect.bisect_right(
            self.keys, (end, 2**62)
        )


class DetailStore:
    """Thread-safe store of send details, indexed by send_time overall and per task."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._details: dict[str, SendDetail] = {}
        self._all = _Index()
        self._tasks: dict[str, _Index] = {}
        self._arrival = itertools.count()

    def add(self, details: Iterable[SendDetail]) -> int:
        """Add details (a known msg_id is replaced in place); returns how many were new."""
        new = 0
        with self._lock:
            for detail in details:
                if detail.msg_id in self._details:
                    self._details[detail.msg_id] = detail
                    continue
                key = (detail.send_time.timestamp(), next(self._arrival))
                self._details[detail.msg_id] = detail
                self._all.add(key, detail.msg_id)
                self._tasks.setdefault(detail.task_id, _Index()).add(key, detail.msg_id)
                new += 1
        return new

    def update(self, msg_id: str, **changes: Any) -> SendDetail:
        """Change one detail's status fields (send_time and task_id are its index keys)."""
        if {"send_time", "task_id", "msg_id"} & changes.keys():
            raise ValueError("send_time, task_id and msg_id cannot change")
        with self._lock:
            detail = dataclasses.replace(self._details[msg_id], **changes)
            self._details[msg_id] = detail
        return detail

    def page(
        self, filters: Mapping[str, str], begin: float, end: float, offset: int, limit: int
    ) -> tuple[list[SendDetail], int]:
        """One page of the details with send_time in [begin, end] (epoch seconds) that match
        every filter, and their total. Without filters besides task_id only the page is read."""
        task_id = filters.get("task_id")
        others = {k: v for k, v in filters.items() if k != "task_id"}
        with self._lock:
            index = self._all if task_id is None else self._tasks.get(task_id, _Index())
            lo, hi = index.bounds(begin, end)
            if not others:
                start = lo + offset
                ids = index.msg_ids[start : min(hi, start + limit)] if limit else []
                return [self._details[m] for m in ids], hi - lo
            found = [self._details[m] for m in index.msg_ids[lo:hi]]
        found = [d for d in found if all(getattr(d, k) == v for k, v in others.items())]
        return found[offset : offset + limit], len(found)

    def snapshot(self) -> list[SendDetail]:
        with self._lock:
            return [self._details[m] for m in self._all.msg_ids]

    def __len__(self) -> int:
        return len(self._details)


def generate(
    count: int,
    begin: dt.datetime,
    end: dt.datetime,
    *,
    task_ids: tuple[str, ...] = ("task-1",),
    seed: int | None = None,
    fail_rate: float = 0.1,
    sending_rate: float = 0.0,
) -> list[SendDetail]:
    """``count`` synthetic details with send times spread over [begin, end] (seedable)."""
    rng = random.Random(seed)
    span = max((end - begin).total_seconds(), 0.0)
    details = []
    for n in range(count):
        sent = (begin + dt.timedelta(seconds=span * n / max(count, 1))).replace(microsecond=0)
        draw = rng.random()
        status = (
            "sending"
            if draw < sending_rate
            else "fail"
            if draw < sending_rate + fail_rate
            else "success"
        )
        details.append(
            SendDetail(
                msg_id=f"{uuid.UUID(int=rng.getrandbits(128)).hex}_{n}",
                task_id=task_ids[n % len(task_ids)],
                cust_flag=f"13{rng.randrange(10**9):09d}",
                send_time=sent,
                send_status=status,
                receive_time=None if status == "sending" else sent + dt.timedelta(seconds=5),
                result_code="E:UNDELIV" if status == "fail" else None,
            )
        )
    return details


def format_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime(TIME_FORMAT)
