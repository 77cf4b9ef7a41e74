"""The compensator: settle the sends whose receipts never came, by asking the provider.

One cycle (``run_once``), per provider, in this order:
1. expire pending sends older than the provider's query window — no API call (``window``);
2. claim due sends in batches (grace period passed, ``next_check_at`` reached; row claims keep
   replicas apart), expire claimed ones that left the window meanwhile;
3. look them up (the provider adapter plans and rate-limits its calls), settle what is final,
   expire what is still pending at its status horizon (``receiptd.compensation.horizon``),
   back off the rest; repeat until nothing due is left;
4. record the run (``compensator_run``) and refresh the gauges.

Provider-agnostic: it knows only ``ports.StatusLookup``. A failing lookup is logged, counted and
its sends backed off; it never stops the cycle for the other providers.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Protocol, runtime_checkable

from receiptd import domain, metrics, ports
from receiptd.clock import Clock, utc_now
from receiptd.compensation import horizon, planning, ratelimit
from receiptd.logs import get_logger

log = get_logger(__name__)
Progress = Callable[[int], None]
_LOOKUP_ERRORS = {
    ports.LookupThrottled: "throttled",
    ports.LookupUnavailable: "unavailable",
    ports.LookupFailed: "error",
}


@runtime_checkable
class WindowedLookup(Protocol):
    """Optional: a lookup that can name its oldest queryable date expires in bulk."""

    def oldest_send_date(self, now: datetime) -> date: ...


@dataclass(slots=True)
class ProviderCycle:
    """What one cycle did for one provider (filled in while it runs)."""

    provider: str
    claimed: int = 0
    calls: Counter[str] = field(default_factory=Counter)  # result → API calls
    settled: Counter[str] = field(default_factory=Counter)  # path (query|window|horizon) → sends
    still_pending: int = 0
    error: str | None = None

    @property
    def expired(self) -> int:
        return self.settled["window"] + self.settled["horizon"]


@dataclass(frozen=True, slots=True)
class CycleSummary:
    providers: tuple[ProviderCycle, ...] = ()

    def _total(self, name: str) -> int:
        return sum(int(getattr(p, name)) for p in self.providers)

    def _merged(self, name: str) -> dict[str, int]:
        return dict(+sum((getattr(p, name) for p in self.providers), Counter()))

    claimed = property(lambda self: self._total("claimed"))
    expired = property(lambda self: self._total("expired"))
    still_pending = property(lambda self: self._total("still_pending"))
    calls = property(lambda self: self._merged("calls"))
    settled = property(lambda self: self._merged("settled"))


class Compensator:
    """Claims due pending sends, looks them up through the providers' lookups, settles them.

    ``heartbeat`` is called before every provider call and after every batch, so a supervisor
    can tell a long cycle that makes progress from a hung one.
    """

    _stopping: threading.Event

    def __init__(
        self,
        sends: ports.SendStore,
        lookups: Sequence[ports.StatusLookup],
        limiter: ports.RateLimiter,
        *,
        grace: timedelta,
        batch_size: int,
        base_backoff: float,
        max_backoff: float,
        replica: str,
        clock: Clock = utc_now,
        heartbeat: Callable[[], None] = ports.nothing,
        horizons: Mapping[domain.Provider, timedelta] | None = None,
    ) -> None:
        self._stopping = threading.Event()
        self.sends = sends
        self.lookups = list(lookups)
        self.limiter = ratelimit.Stoppable(limiter, self._stopping, heartbeat)
        self.heartbeat = heartbeat
        self.grace = grace
        self.batch_size = batch_size
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.replica = replica
        self.clock = clock
        # Status horizon per provider; absent or zero: ask up to the provider's query window.
        self.horizons = {p: h for p, h in (horizons or {}).items() if h > timedelta(0)}

    def stop(self) -> None:
        """Make a running cycle end soon (idempotent, thread-safe, permanent): no further call
        is made; claimed sends not yet looked up are released with their backoff. Sends whose
        calls were already answered in the interrupted batch are asked again later."""
        self._stopping.set()

    def run_once(self, progress: Progress | None = None) -> CycleSummary:
        """One compensation cycle over every provider; returns what it did.

        Database errors (``ports.StoreUnavailable``/``StoreWriteError``) propagate: the
        scheduler logs them and the next cycle retries; claims expire with their lease.
        """
        try:
            results = tuple(
                self._run_provider(lookup, progress)
                for lookup in self.lookups
                if not self._stopping.is_set()
            )
        except Exception:
            metrics.COMPENSATOR_RUNS.labels("error").inc()
            raise
        self._refresh_gauges()
        ok = all(r.error is None for r in results)
        metrics.COMPENSATOR_RUNS.labels("ok" if ok else "error").inc()
        return CycleSummary(results)

    def plan(self, limit: int | None = None) -> list[planning.ProviderPlan]:
        """The calls a cycle would make now, without claiming or calling anything."""
        now = self.clock()
        plans = []
        for lookup in self.lookups:
            due = self.sends.peek_due(lookup.provider, now, self.grace, limit or self.batch_size)
            inside = [s for s in due if lookup.in_window(s, now)]
            queries = (
                tuple(lookup.plan(inside)) if isinstance(lookup, planning.PlanningLookup) else ()
            )
            expire = len(due) - len(inside)
            plans.append(planning.ProviderPlan(lookup.provider.value, len(due), expire, queries))
        return plans

    # --- one provider ----------------------------------------------------------------------

    def _run_provider(self, lookup: ports.StatusLookup, progress: Progress | None) -> ProviderCycle:
        provider = lookup.provider
        started = self.clock()
        run_id = self.sends.start_run(self.replica, started)
        cycle = ProviderCycle(provider.value)
        log.info("compensation_started", provider=provider.value, replica=self.replica)
        if isinstance(lookup, WindowedLookup):  # bulk expiry: no claim, no call
            oldest = lookup.oldest_send_date(started)
            cycle.settled["window"] += self.sends.expire_outside_window(provider, oldest, started)
        self._drain(lookup, started, cycle, progress)
        cycle.calls, cycle.settled = +cycle.calls, +cycle.settled
        for path, n in cycle.settled.items():
            metrics.SETTLED.labels(provider.value, path).inc(n)
        self.sends.finish_run(
            run_id,
            self.clock(),
            claimed=cycle.claimed,
            calls=cycle.calls.total(),
            settled=cycle.settled.total(),
            expired=cycle.expired,
            errors=sum(n for result, n in cycle.calls.items() if result != "ok"),
        )
        log.info(
            "compensation_finished",
            provider=provider.value,
            claimed=cycle.claimed,
            calls=dict(cycle.calls),
            settled=dict(cycle.settled),
            still_pending=cycle.still_pending,
            error=cycle.error,
        )
        return cycle

    def _drain(
        self,
        lookup: ports.StatusLookup,
        started: datetime,
        cycle: ProviderCycle,
        progress: Progress | None,
    ) -> None:
        """Claim, look up and settle batches until nothing due is left.

        Database work runs on one helper thread so that it overlaps the rate-limited calls:
        the next batch is claimed (leased to this run) while the current one is looked up, and
        each batch is settled while the next is looked up. A single worker keeps the order
        claim k+1 → settle k → claim k+2. Sends claimed at ``started`` and backed off past it
        are not due again, so the loop ends; ``seen`` guards against a zero backoff.
        """
        seen: set[int] = set()
        settles: list[tuple[str, Future[int]]] = []
        claim = partial(self.sends.claim_due, lookup.provider, started, self.grace, self.batch_size)
        with ThreadPoolExecutor(1, thread_name_prefix="compensator-db") as db:
            upcoming = db.submit(claim)
            while batch := upcoming.result():
                fresh = [s for s in batch if s.id not in seen]
                if not fresh or self._stopping.is_set():  # handled already, or stopping
                    release = partial(self._settle, limit=self.horizons.get(lookup.provider))
                    settles.append(("query", db.submit(release, [], batch)))
                    break
                seen.update(s.id for s in fresh)
                upcoming = db.submit(claim)
                settles.extend(self._process(lookup, fresh, cycle, db))
                self.heartbeat()
                if progress is not None:
                    progress(len(fresh))
        for path, done in settles:
            cycle.settled[path] += done.result()

    def _process(
        self,
        lookup: ports.StatusLookup,
        batch: list[ports.PendingSend],
        cycle: ProviderCycle,
        db: ThreadPoolExecutor,
    ) -> list[tuple[str, Future[int]]]:
        now = self.clock()
        cycle.claimed += len(batch)
        inside = [s for s in batch if lookup.in_window(s, now)]
        inside_ids = {s.id for s in inside}
        outside = [
            ports.Settlement(s.id, domain.SendStatus.EXPIRED, domain.SettledBy.WINDOW)
            for s in batch
            if s.id not in inside_ids
        ]
        limit = self.horizons.get(lookup.provider)
        last_chance = [s for s in inside if horizon.reached(s, now, limit)]
        result = self._lookup(lookup, inside, cycle)
        cycle.calls.update(result.calls)
        expired = horizon.verdicts(last_chance, result)
        gone = {s.send_id for s in expired}
        cycle.still_pending += (
            len(inside) - len(gone) - sum(1 for s in result.settlements if s.status.is_final)
        )
        still = [s for s in inside if s.id not in gone]
        settle = partial(self._settle, limit=limit)
        # In order on the one database thread: expiries first, so the release of the query's
        # still-pending sends (guarded by status = pending) leaves the expired ones alone.
        return [
            ("window", db.submit(settle, outside, [])),
            ("horizon", db.submit(settle, expired, [])),
            ("query", db.submit(settle, result.settlements, still)),
        ]

    def _settle(
        self,
        settlements: Sequence[ports.Settlement],
        pending: Sequence[ports.PendingSend],
        limit: timedelta | None = None,
    ) -> int:
        if not settlements and not pending:
            return 0
        return self.sends.settle(
            settlements,
            pending,
            self.clock(),
            self.base_backoff,
            self.max_backoff,
            horizon=limit,
        )

    def _lookup(
        self, lookup: ports.StatusLookup, sends: list[ports.PendingSend], cycle: ProviderCycle
    ) -> ports.LookupResult:
        if not sends:
            return ports.LookupResult([], {})
        try:
            return lookup.lookup(sends, self.limiter)
        except ratelimit.Stopped:
            log.info("compensation_stopping", provider=lookup.provider.value, sends=len(sends))
            return ports.LookupResult([], {})
        except Exception as exc:  # one provider's failure must not stop the cycle
            kind = next((k for t, k in _LOOKUP_ERRORS.items() if isinstance(exc, t)), "error")
            cycle.error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "compensation_lookup_failed",
                provider=lookup.provider.value,
                kind=kind,
                error=cycle.error,
                sends=len(sends),
            )
            return ports.LookupResult([], {kind: 1})

    def _refresh_gauges(self) -> None:
        try:
            summary = self.sends.summary()
        except ports.StoreUnavailable as exc:  # gauges are best effort
            log.warning("compensation_gauges_failed", error=str(exc))
            return
        for (provider, status), n in summary.counts.items():
            metrics.SENDS.labels(provider, status).set(n)
        now = self.clock()
        for lookup in self.lookups:
            oldest = summary.oldest_pending.get(lookup.provider.value)
            age = (now - _aware(oldest)).total_seconds() if oldest else 0.0
            metrics.OLDEST_PENDING.labels(lookup.provider.value).set(max(age, 0.0))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
