"""The compensator: settle the sends whose receipts never came, by asking the provider.

One cycle (``run_once``), per provider account, in this order:
1. expire pending sends older than the provider's query window — no API call (``window``);
2. claim due sends in batches (grace period passed, ``next_check_at`` reached; row claims keep
   replicas apart), expire claimed ones that left the window meanwhile;
3. look them up (the provider adapter plans and rate-limits its calls), settle what is final,
   expire what is still pending at its status horizon (``receiptd.compensation.horizon``),
   back off the rest; repeat until nothing due is left;
4. record the run (``compensator_run``) and refresh the gauges.

Accounts take turns, one batch each (round robin): a backlog in one account delays another
account's first query by at most one batch. Each account is asked only about its own sends,
through its own lookup (its keys) and its own rate limiter (provider limits are per account).

Provider-agnostic: it knows only ``ports.StatusLookup``. A failing lookup is logged, counted and
its sends backed off; it never stops the cycle for the other accounts.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Generator, Mapping, Sequence
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


def outcome_of(exc: BaseException) -> str:
    """The calls-counter result a lookup error stands for (throttled, unavailable, error)."""
    return next((r for kind, r in _LOOKUP_ERRORS.items() if isinstance(exc, kind)), "error")


@runtime_checkable
class WindowedLookup(Protocol):
    """Optional: a lookup that can name its oldest queryable date expires in bulk."""

    def oldest_send_date(self, now: datetime) -> date: ...


@dataclass(frozen=True, slots=True)
class AccountLookup:
    """One provider account as the compensator serves it: the lookup made with its keys,
    its own rate limiter and status horizon (None: the compensator's shared ones)."""

    lookup: ports.StatusLookup
    account: str = domain.DEFAULT_ACCOUNT
    limiter: ports.RateLimiter | None = None
    horizon: timedelta | None = None

    @property
    def provider(self) -> domain.Provider:
        return self.lookup.provider


@dataclass(slots=True)
class ProviderCycle:
    """What one cycle did for one provider account (filled in while it runs)."""

    provider: str
    account: str = domain.DEFAULT_ACCOUNT
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
        lookups: Sequence[ports.StatusLookup | AccountLookup],
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
        self.heartbeat = heartbeat
        self.limiter = self._stoppable(limiter)
        self.accounts = [self._served(a) for a in lookups]
        self.grace = grace
        self.batch_size = batch_size
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.replica = replica
        self.clock = clock
        # Status horizon per provider; absent or zero: ask up to the provider's query window.
        self.horizons = {p: h for p, h in (horizons or {}).items() if h > timedelta(0)}

    def _stoppable(self, limiter: ports.RateLimiter) -> ratelimit.Stoppable:
        return ratelimit.Stoppable(limiter, self._stopping, self.heartbeat)

    def _served(self, given: ports.StatusLookup | AccountLookup) -> AccountLookup:
        """An account with its limiter made stoppable (a plain lookup: the default account
        on the shared limiter)."""
        served = given if isinstance(given, AccountLookup) else AccountLookup(given)
        own = served.limiter
        return AccountLookup(
            served.lookup,
            served.account,
            self.limiter if own is None else self._stoppable(own),
            served.horizon,
        )

    def _horizon(self, served: AccountLookup) -> timedelta | None:
        if served.horizon is not None:
            return served.horizon if served.horizon > timedelta(0) else None
        return self.horizons.get(served.provider)

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
            results = self._run_accounts(progress)
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
        for served in self.accounts:
            lookup = served.lookup
            due = self.sends.peek_due(
                lookup.provider, now, self.grace, limit or self.batch_size, account=served.account
            )
            inside = [s for s in due if lookup.in_window(s, now)]
            queries = (
                tuple(lookup.plan(inside)) if isinstance(lookup, planning.PlanningLookup) else ()
            )
            expire = len(due) - len(inside)
            plans.append(
                planning.ProviderPlan(
                    lookup.provider.value, len(due), expire, queries, account=served.account
                )
            )
        return plans

    # --- the accounts, one batch each in turn --------------------------------------------

    def _run_accounts(self, progress: Progress | None) -> tuple[ProviderCycle, ...]:
        """Every account's cycle, interleaved a batch at a time (round robin) over one
        database thread (see :meth:`_drain`)."""
        with ThreadPoolExecutor(1, thread_name_prefix="compensator-db") as db:
            runs = [self._start(served) for served in self.accounts]
            turns = {
                i: self._drain(served, started, cycle, progress, db)
                for i, (served, (cycle, started, _)) in enumerate(
                    zip(self.accounts, runs, strict=True)
                )
            }
            while turns and not self._stopping.is_set():
                for i, turn in list(turns.items()):
                    if next(turn, None) is None:
                        del turns[i]
            for turn in turns.values():  # stopping: each releases what it holds
                turn.close()
        for served, (cycle, _, run_id) in zip(self.accounts, runs, strict=True):
            self._finish(served, cycle, run_id)
        return tuple(cycle for cycle, _, _ in runs)

    def _start(self, served: AccountLookup) -> tuple[ProviderCycle, datetime, int]:
        provider, account = served.provider, served.account
        started = self.clock()
        run_id = self.sends.start_run(self.replica, started)
        cycle = ProviderCycle(provider.value, account)
        log.info(
            "compensation_started", provider=provider.value, account=account, replica=self.replica
        )
        lookup = served.lookup
        if isinstance(lookup, WindowedLookup):  # bulk expiry: no claim, no call
            oldest = lookup.oldest_send_date(started)
            cycle.settled["window"] += self.sends.expire_outside_window(
                provider, oldest, started, account=account
            )
        return cycle, started, run_id

    def _finish(self, served: AccountLookup, cycle: ProviderCycle, run_id: int) -> None:
        cycle.calls, cycle.settled = +cycle.calls, +cycle.settled
        for path, n in cycle.settled.items():
            metrics.SETTLED.labels(cycle.provider, cycle.account, path).inc(n)
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
            provider=cycle.provider,
            account=cycle.account,
            claimed=cycle.claimed,
            calls=dict(cycle.calls),
            settled=dict(cycle.settled),
            still_pending=cycle.still_pending,
            error=cycle.error,
        )

    def _drain(
        self,
        served: AccountLookup,
        started: datetime,
        cycle: ProviderCycle,
        progress: Progress | None,
        db: ThreadPoolExecutor,
    ) -> Generator[int, None, None]:
        """Claim, look up and settle one account's batches until nothing due is left,
        yielding after each batch (the other accounts' turn).

        Database work runs on the one helper thread so that it overlaps the rate-limited
        calls: the account's next batch is claimed (leased to this run) while the current one
        is looked up, and each batch is settled while the next is looked up. The single worker
        keeps the order claim k+1 → settle k → claim k+2. Sends claimed at ``started`` and
        backed off past it are not due again, so the loop ends; ``seen`` guards against a
        zero backoff. Closed early (a stop), it releases the batch it had claimed ahead.
        """
        seen: set[int] = set()
        settles: list[tuple[str, Future[int]]] = []
        limit = self._horizon(served)
        claim = partial(
            self.sends.claim_due,
            served.provider,
            started,
            self.grace,
            self.batch_size,
            account=served.account,
        )
        upcoming = db.submit(claim)
        try:
            while batch := upcoming.result():
                fresh = [s for s in batch if s.id not in seen]
                if not fresh or self._stopping.is_set():  # handled already, or stopping
                    settles.append(("query", db.submit(self._settle, [], batch, limit)))
                    break
                seen.update(s.id for s in fresh)
                upcoming = db.submit(claim)
                settles.extend(self._process(served, fresh, cycle, db))
                self.heartbeat()
                if progress is not None:
                    progress(len(fresh))
                yield len(fresh)
        except GeneratorExit:  # stopped between turns: hand the claimed-ahead batch back
            settles.append(("query", db.submit(self._settle, [], upcoming.result(), limit)))
        finally:
            for path, done in settles:
                cycle.settled[path] += done.result()

    def _process(
        self,
        served: AccountLookup,
        batch: list[ports.PendingSend],
        cycle: ProviderCycle,
        db: ThreadPoolExecutor,
    ) -> list[tuple[str, Future[int]]]:
        lookup = served.lookup
        now = self.clock()
        cycle.claimed += len(batch)
        inside = [s for s in batch if lookup.in_window(s, now)]
        inside_ids = {s.id for s in inside}
        outside = [
            ports.Settlement(s.id, domain.SendStatus.EXPIRED, domain.SettledBy.WINDOW)
            for s in batch
            if s.id not in inside_ids
        ]
        limit = self._horizon(served)
        last_chance = [s for s in inside if horizon.reached(s, now, limit)]
        result = self._lookup(served, inside, cycle)
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
        self, served: AccountLookup, sends: list[ports.PendingSend], cycle: ProviderCycle
    ) -> ports.LookupResult:
        if not sends:
            return ports.LookupResult([], {})
        lookup, account = served.lookup, served.account
        assert served.limiter is not None  # _served() gives every account one
        try:
            return lookup.lookup(sends, served.limiter)
        except ratelimit.Stopped:
            log.info(
                "compensation_stopping",
                provider=lookup.provider.value,
                account=account,
                sends=len(sends),
            )
            return ports.LookupResult([], {})
        except Exception as exc:  # one provider's failure must not stop the cycle
            kind = outcome_of(exc)
            cycle.error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "compensation_lookup_failed",
                provider=lookup.provider.value,
                account=account,
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
        for served in self.accounts:  # every status of every account: 0 once none is left
            for status in domain.SendStatus:
                key = (served.provider.value, served.account, status.value)
                metrics.SENDS.labels(*key).set(summary.counts.get(key, 0))
        now = self.clock()
        for served in self.accounts:
            scope = (served.provider.value, served.account)
            oldest = summary.oldest_pending.get(scope)
            age = (now - _aware(oldest)).total_seconds() if oldest else 0.0
            metrics.OLDEST_PENDING.labels(*scope).set(max(age, 0.0))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
