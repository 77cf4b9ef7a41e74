"""The truth about every send: what was sent, to whom, and what became of it.

QuerySendDetails answers from here and SmsReport receipts are generated from here, so the two
channels never disagree. Records are indexed by (phone, China send date) and by BizId, so a query
costs O(matches) however many sends are stored.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from receiptd_emulator import timeutil

DELIVERED_CODE = "DELIVERED"
DELIVERED_MESSAGE = "用户接收成功"


@dataclass(frozen=True, slots=True)
class SendRecord:
    """One recipient of one send, as the provider knows it at the time of the snapshot.

    status: 1 waiting for receipt, 2 failed, 3 delivered (QuerySendDetails `SendStatus`).
    receipt_fate: what the receipt channel does with it ("queue", "lost", "duplicate", "late",
    "malformed", or "none" for a send that never settles).
    """

    biz_id: str
    phone_number: str
    out_id: str
    template_code: str
    sign_name: str
    content: str
    send_time: dt.datetime
    status: int
    err_code: str
    err_msg: str
    receive_time: dt.datetime | None
    receipt_fate: str
    sms_size: int


class Send:
    """Internal, immutable after creation: the outcome is decided when the send is made."""

    __slots__ = (
        "biz_id",
        "content",
        "err_code",
        "err_msg",
        "fate",
        "out_id",
        "outcome",
        "phone",
        "receive_ts",
        "send_date",
        "send_time",
        "sign_name",
        "template_code",
    )

    def __init__(
        self,
        *,
        biz_id: str,
        phone: str,
        out_id: str,
        template_code: str,
        sign_name: str,
        content: str,
        send_time: dt.datetime,
        outcome: str,
        err_code: str,
        err_msg: str,
        receive_ts: float | None,
        fate: str,
    ) -> None:
        self.biz_id = biz_id
        self.phone = phone
        self.out_id = out_id
        self.template_code = template_code
        self.sign_name = sign_name
        self.content = content
        self.send_time = send_time
        self.send_date = timeutil.cst_date(send_time)
        self.outcome = outcome
        self.err_code = err_code
        self.err_msg = err_msg
        self.receive_ts = receive_ts
        self.fate = fate

    @property
    def sms_size(self) -> int:
        return sms_parts(self.content)

    def status_at(self, now: float) -> int:
        """1 until the carrier's receipt time has passed (forever for pending sends)."""
        if self.receive_ts is None or now < self.receive_ts:
            return 1
        return 3 if self.outcome == "delivered" else 2

    def receive_time(self) -> dt.datetime | None:
        return None if self.receive_ts is None else timeutil.from_epoch(self.receive_ts)

    def record(self, now: float) -> SendRecord:
        status = self.status_at(now)
        settled = status != 1
        return SendRecord(
            biz_id=self.biz_id,
            phone_number=self.phone,
            out_id=self.out_id,
            template_code=self.template_code,
            sign_name=self.sign_name,
            content=self.content,
            send_time=self.send_time,
            status=status,
            err_code=self.err_code if settled else "",
            err_msg=self.err_msg if settled else "",
            receive_time=self.receive_time() if settled else None,
            receipt_fate=self.fate,
            sms_size=self.sms_size,
        )


def sms_parts(content: str) -> int:
    """Billing parts: 70 characters fit one SMS; longer texts go in 67-character parts."""
    return 1 if len(content) <= 70 else math.ceil(len(content) / 67)


class SmsRecords:
    def __init__(self, clock: Callable[[], float] = time.time, seed: int | None = None) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._sends: list[Send] = []
        self._by_day: defaultdict[tuple[str, str], list[Send]] = defaultdict(list)
        self._by_biz: defaultdict[str, list[Send]] = defaultdict(list)
        base = random.Random(seed).randrange(100_000_000_000_000, 900_000_000_000_000)
        self._biz_counter = itertools.count(base)

    def new_biz_id(self) -> str:
        """Like `900619746936498440^0`: unique digits, caret, a zero."""
        return f"{next(self._biz_counter)}^0"

    def add(self, sends: Iterable[Send]) -> None:
        with self._lock:
            for send in sends:
                self._sends.append(send)
                self._by_day[(send.phone, send.send_date)].append(send)
                self._by_biz[send.biz_id].append(send)

    def query(self, phone: str, send_date: str, biz_id: str = "") -> list[Send]:
        """Sends to `phone` on China date `send_date` (newest first), optionally one BizId's."""
        with self._lock:
            matches = list(self._by_day.get((phone, send_date), ()))
        if biz_id:
            matches = [s for s in matches if s.biz_id == biz_id]
        matches.sort(key=lambda s: s.send_time, reverse=True)
        return matches

    def by_biz_id(self, biz_id: str) -> list[Send]:
        with self._lock:
            return list(self._by_biz.get(biz_id, ()))

    def snapshot(self) -> list[SendRecord]:
        now = self._clock()
        with self._lock:
            sends = list(self._sends)
        return [send.record(now) for send in sends]

    def __len__(self) -> int:
        return len(self._sends)
