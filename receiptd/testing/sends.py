"""InMemorySendStore: ``ports.SendStore`` in a dict, for unit tests of the compensator.

It keeps the SQL store's rules (claims as leases, a final status never changes, backoff per
check) so the same contract suite passes over both.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from receiptd import domain, ports
from receiptd.compensation import horizon as horizons

PENDING = domain.SendStatus.PENDING


@dataclass(frozen=True, slots=True)
class SendRow:
    """One ``sms_send`` row, as far as the compensator can tell."""

    id: int
    send: ports.NewSend
    send_date: date
    status: domain.SendStatus = PENDING
    settled_by: domain.SettledBy | None = None
    err_code: str | None = None
    err_msg: str | None = None
    settled_at: datetime | None = None
    next_check_at: datetime | None = None
    check_count: int = 0
    claimed_by: str | None = None
    claimed_until: datetime | None = None

    def pending(self) -> ports.PendingSend:
        s = self.send
        return ports.PendingSend(
            self.id,
            s.provider,
            s.biz_id,
            s.phone_number,
            s.sent_at,
            self.send_date,
            s.out_id,
            s.template_code,
            self.check_count,
            s.account,
            s.matched_by,
        )


@dataclass(frozen=True, slots=True)
class RunRow:
    replica: str
    started_at: datetime
    finished_at: datetime | None = None
    counts: tuple[tuple[str, int], ...] = ()


class InMemorySendStore:
    """A thread-safe ``ports.SendStore``; ``unavailable`` makes every call fail as a database
    outage would."""

    def __init__(self, tz: tzinfo = domain.CHINA_TZ, lease: timedelta = ports.CLAIM_LEASE) -> None:
        self.tz = tz
        self.lease = lease
        self.unavailable = False
        self.rows: dict[int, SendRow] = {}
        self.runs: dict[int, RunRow] = {}
        self._keys: dict[tuple[str, str, str, str, str], int] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # --- ports.SendStore ------------------------------------------------------------------

    def register(self, sends: Sequence[ports.NewSend], now: datetime) -> int:
        with self._locked():
            inserted = 0
            for send in map(_normalized, sends):
                key = (
                    send.provider.value,
                    send.account,
                    send.matched_by.value,
                    send.biz_id,
                    send.phone_number,
                )
                if key not in self._keys:
                    row_id = next(self._ids)
                    send_date = domain.provider_send_date(send.sent_at, self.tz)
                    self._keys[key] = row_id
                    self.rows[row_id] = SendRow(row_id, send, send_date)
                    inserted += 1
            return inserted

    def claim_due(
        self,
        provider: domain.Provider,
        now: datetime,
        grace: timedelta,
        limit: int,
        *,
        account: str = domain.DEFAULT_ACCOUNT,
    ) -> list[ports.PendingSend]:
        token = uuid.uuid4().hex
        with self._locked():
            due = self._due(provider, account, now, grace)[:limit]
            for row in due:
                self.rows[row.id] = replace(row, claimed_by=token, claimed_until=now + self.lease)
            return [row.pending() for row in due]

    def peek_due(
        self,
        provider: domain.Provider,
        now: datetime,
        grace: timedelta,
        limit: int,
        *,
        account: str = domain.DEFAULT_ACCOUNT,
    ) -> list[ports.PendingSend]:
        with self._locked():
            return [row.pending() for row in self._due(provider, account, now, grace)[:limit]]

    def expire_outside_window(
        self,
        provider: domain.Provider,
        oldest: date,
        now: datetime,
        *,
        account: str = domain.DEFAULT_ACCOUNT,
    ) -> int:
        with self._locked():
            old = [
                row
                for row in self.rows.values()
                if row.send.provider is provider
                and row.send.account == account
                and row.status is PENDING
                and row.send_date < oldest
            ]
            for row in old:
                self._settle_row(
                    row,
                    ports.Settlement(row.id, domain.SendStatus.EXPIRED, domain.SettledBy.WINDOW),
                    now,
                    count_check=False,
                )
            return len(old)

    def settle(
        self,
        settlements: Sequence[ports.Settlement],
        pending: Sequence[ports.PendingSend],
        now: datetime,
        base_backoff: float,
        max_backoff: float,
        horizon: timedelta | None = None,
    ) -> int:
        schedule = horizons.Schedule(base_backoff, max_backoff, horizon)
        with self._locked():
            final = {s.send_id: s for s in settlements if s.status.is_final}
            settled = sum(
                self._settle_row(self.rows[s.send_id], s, now)
                for s in final.values()
                if s.send_id in self.rows
            )
            for send in pending:
                row = self.rows.get(send.id)
                if send.id in final or row is None or row.status is not PENDING:
                    continue
                self.rows[row.id] = replace(
                    row,
                    next_check_at=horizons.next_check_at(send, now, schedule),
                    check_count=row.check_count + 1,
                    claimed_by=None,
                    claimed_until=None,
                )
            return settled

    def start_run(self, replica: str, now: datetime) -> int:
        with self._locked():
            run_id = len(self.runs) + 1
            self.runs[run_id] = RunRow(replica, now)
            return run_id

    def finish_run(self, run_id: int, now: datetime, **counts: int) -> None:
        with self._locked():
            self.runs[run_id] = replace(
                self.runs[run_id], finished_at=now, counts=tuple(sorted(counts.items()))
            )

    def summary(self) -> ports.StatusSummary:
        with self._locked():
            settled = Counter(
                (
                    r.send.provider.value,
                    r.send.account,
                    r.status.value,
                    r.settled_by.value if r.settled_by else "",
                )
                for r in self.rows.values()
            )
            counts: Counter[tuple[str, str, str]] = Counter()
            for (provider, account, status, _by), n in settled.items():
                counts[provider, account, status] += n
            oldest: dict[tuple[str, str], datetime] = {}
            for row in self.rows.values():
                p = (row.send.provider.value, row.send.account)
                if row.status is PENDING and (p not in oldest or row.send.sent_at < oldest[p]):
                    oldest[p] = row.send.sent_at
            last = self.runs[max(self.runs)] if self.runs else None
            return ports.StatusSummary(
                counts=dict(counts),
                settled=dict(settled),
                oldest_pending=oldest,
                last_run_started=last.started_at if last else None,
                last_run_finished=last.finished_at if last else None,
            )

    # --- the status API's view, as the SQL store gives it ---------------------------------

    def by_biz_id(
        self,
        biz_id: str,
        account: str | None = None,
        matched_by: domain.SendKey | None = None,
    ) -> list[dict[str, Any]]:
        with self._locked():
            rows = sorted(
                (
                    r
                    for r in self.rows.values()
                    if r.send.biz_id == biz_id
                    and account in (None, r.send.account)
                    and matched_by in (None, r.send.matched_by)
                ),
                key=lambda r: (r.send.account, r.send.phone_number),
            )
            return [_public(r) for r in rows]

    # --- internals ------------------------------------------------------------------------

    def _locked(self) -> threading.Lock:
        if self.unavailable:
            raise ports.StoreUnavailable("in-memory send store made unavailable")
        return self._lock

    def _due(
        self, provider: domain.Provider, account: str, now: datetime, grace: timedelta
    ) -> list[SendRow]:
        due = [
            row
            for row in self.rows.values()
            if row.send.provider is provider
            and row.send.account == account
            and row.status is PENDING
            and row.send.sent_at <= now - grace
            and (row.next_check_at is None or row.next_check_at <= now)
            and (row.claimed_until is None or row.claimed_until < now)
        ]
        return sorted(due, key=lambda row: (row.send.sent_at, row.id))

    def _settle_row(
        self, row: SendRow, settlement: ports.Settlement, now: datetime, count_check: bool = True
    ) -> int:
        status = domain.next_status(row.status, settlement.status)
        if status is row.status:  # final already: a final status never changes
            return 0
        self.rows[row.id] = replace(
            row,
            status=status,
            settled_by=settlement.settled_by,
            err_code=settlement.err_code,
            err_msg=settlement.err_msg,
            settled_at=now,
            check_count=row.check_count + (1 if count_check else 0),
            claimed_by=None,
            claimed_until=None,
        )
        return 1


def _public(row: SendRow) -> dict[str, Any]:
    s = row.send
    return {
        "id": row.id,
        "provider": s.provider.value,
        "account": s.account,
        "matched_by": s.matched_by.value,
        "biz_id": s.biz_id,
        "phone_number": s.phone_number,
        "out_id": s.out_id,
        "task_id": s.task_id,
        "sent_at": s.sent_at,
        "send_date": row.send_date,
        "status": row.status.value,
        "settled_by": row.settled_by.value if row.settled_by else None,
        "err_code": row.err_code,
        "err_msg": row.err_msg,
        "settled_at": row.settled_at,
        "next_check_at": row.next_check_at,
        "check_count": row.check_count,
        "claimed_by": row.claimed_by,
        "claimed_until": row.claimed_until,
    }


def _normalized(send: ports.NewSend) -> ports.NewSend:
    # Aliyun receipts carry 11 digits (international: country code and digits); the SQL
    # store registers numbers in that form too.
    if send.provider is domain.Provider.ALIYUN:
        number = domain.normalize_number(send.phone_number, send.matched_by)
        return replace(send, phone_number=number)
    return send
