"""The truth about every international send (Dysmsapi 2018-05-01), one record per MessageId.

QueryMessage answers from here and the GlobeSmsReport / international SmsReport receipts are
built from here, so the channels never disagree.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

from receiptd_emulator import timeutil
from receiptd_emulator.globe_numbers import NumberDetail

#: delivered; failed; expired (the international receipts' Status 6, a failure); pending:
#: no receipt ever (QueryMessage says "delivering" for ever).
GLOBE_OUTCOMES = ("delivered", "failed", "expired", "pending")


@dataclass(frozen=True, slots=True)
class GlobeRecord:
    """One international send as the provider knows it at the time of the snapshot.

    site: "cn" (SendMessageToGlobe on the China site: GlobeSmsReport receipts) or "intl";
    status: QueryMessage's Status now ("1" delivered, "2" failed or expired, "3" delivering);
    outcome: one of GLOBE_OUTCOMES; receipt_fate: as `SendRecord.receipt_fate`.
    """

    message_id: str
    to: str
    sender: str
    message: str
    task_id: str
    template_code: str
    site: str
    send_time: dt.datetime
    status: str
    outcome: str
    err_code: str
    err_msg: str
    receive_time: dt.datetime | None
    receipt_fate: str
    segments: int


@dataclass(frozen=True, slots=True)
class GlobeSend:
    """Internal, immutable: the outcome is decided when the send is made."""

    message_id: str
    to: str
    sender: str
    message: str
    task_id: str
    template_code: str
    site: str
    send_time: dt.datetime
    outcome: str
    err_code: str
    err_msg: str
    receive_ts: float | None
    fate: str
    segments: int
    number_detail: NumberDetail

    def settled_at(self, now: float) -> bool:
        return self.receive_ts is not None and now >= self.receive_ts

    def query_status(self, now: float) -> str:
        """QueryMessage's Status (the current API page): 3 until the carrier's receipt time,
        then 1 delivered or 2 failed; an expired send (receipt Status 6) is 2 here."""
        if not self.settled_at(now):
            return "3"
        return "1" if self.outcome == "delivered" else "2"

    def receive_time(self) -> dt.datetime | None:
        return None if self.receive_ts is None else timeutil.from_epoch(self.receive_ts)

    def record(self, now: float) -> GlobeRecord:
        settled = self.settled_at(now)
        return GlobeRecord(
            message_id=self.message_id,
            to=self.to,
            sender=self.sender,
            message=self.message,
            task_id=self.task_id,
            template_code=self.template_code,
            site=self.site,
            send_time=self.send_time,
            status=self.query_status(now),
            outcome=self.outcome,
            err_code=self.err_code if settled else "",
            err_msg=self.err_msg if settled else "",
            receive_time=self.receive_time() if settled else None,
            receipt_fate=self.fate,
            segments=self.segments,
        )


class GlobeRecords:
    """One account's international sends by MessageId (unique, 16 digits)."""

    def __init__(self, clock: Callable[[], float], seed: int | None = None) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._by_id: dict[str, GlobeSend] = {}
        base = random.Random(seed).randrange(1_000_000_000_000_000, 9_000_000_000_000_000)
        self._ids = itertools.count(base)

    def new_message_id(self) -> str:
        return str(next(self._ids))

    def add(self, sends: list[GlobeSend]) -> None:
        """All or none: a MessageId taken already (or twice in `sends`) is a ValueError."""
        new = {send.message_id: send for send in sends}
        with self._lock:
            taken = sorted(set(new) & set(self._by_id))
            if taken or len(new) < len(sends):
                raise ValueError(f"MessageIds must be unique: {taken[:3]} exist already")
            self._by_id.update(new)

    def get(self, message_id: str) -> GlobeSend | None:
        return self._by_id.get(message_id)

    def snapshot(self) -> list[GlobeRecord]:
        now = self._clock()
        with self._lock:
            sends = list(self._by_id.values())
        return [send.record(now) for send in sends]

    def __len__(self) -> int:
        return len(self._by_id)
