"""In-memory twins of the compensator's ports: a status lookup over a dict, a counting limiter."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from receiptd import domain, ports
from receiptd.compensation import planning


@dataclass(frozen=True, slots=True)
class Truth:
    """What the provider knows about one send: SendStatus 1/2/3 and the carrier code."""

    send_status: int
    err_code: str | None = None


class CountingLimiter:
    """A RateLimiter that never blocks and counts acquisitions (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.acquired = 0

    def acquire(self) -> None:
        with self._lock:
            self.acquired += 1


@dataclass
class FakeLookup:
    """A StatusLookup over ``truths[(biz_id, phone_number)]`` that plans calls like Aliyun.

    ``fail_with`` makes every lookup raise that exception (to test isolation of providers);
    ``calls`` records every planned query executed, one limiter token each.
    """

    truths: dict[tuple[str, str], Truth] = field(default_factory=dict)
    provider_name: domain.Provider = domain.Provider.ALIYUN
    fail_with: Exception | None = None
    window: Callable[[ports.PendingSend, datetime], bool] | None = None
    calls: list[planning.PlannedQuery] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def provider(self) -> domain.Provider:
        return self.provider_name

    def in_window(self, send: ports.PendingSend, now: datetime) -> bool:
        if self.window is not None:
            return self.window(send, now)
        return domain.in_query_window(send.send_date, now)

    def oldest_send_date(self, now: datetime) -> date:
        return now.astimezone(domain.CHINA_TZ).date() - timedelta(days=30)

    def plan(self, sends: Sequence[ports.PendingSend]) -> tuple[planning.PlannedQuery, ...]:
        return planning.plan(sends)

    def lookup(
        self, sends: Sequence[ports.PendingSend], limiter: ports.RateLimiter
    ) -> ports.LookupResult:
        if self.fail_with is not None:
            raise self.fail_with
        settlements: list[ports.Settlement] = []
        queries = planning.plan(sends)
        for query in queries:
            limiter.acquire()
            with self._lock:
                self.calls.append(query)
            for send in query.sends:
                truth = self.truths.get((send.biz_id, send.phone_number))
                if truth is not None:
                    row = planning.Detail(truth.send_status, send.out_id, truth.err_code)
                    settlements.append(planning.settlement(send, row))
        return ports.LookupResult(settlements, {"ok": len(queries)} if queries else {})
