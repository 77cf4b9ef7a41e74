"""One account's lookups by the id its sends are matched by.

An Alibaba account holds two kinds of sends: SendSms sends (a BizId, looked up with
QuerySendDetails, whose answers are planned and grouped by number and date) and
SendMessageToGlobe sends (a MessageId, looked up one by one with QueryMessage, under its own,
lower rate limit: docs/international.md). :class:`KeyedLookup` is that account's one
``ports.StatusLookup``: it hands each claimed send to the lookup of its key, so the compensator
core claims, settles and counts per account exactly as before. Pure: no I/O of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime

from receiptd import domain, ports
from receiptd.compensation import planning
from receiptd.compensation.cycle import WindowedLookup, outcome_of


class KeyedLookup:
    """``ports.StatusLookup`` over one lookup per ``domain.SendKey``, each with its own rate
    limiter (absent: the compensator's limiter for the account). A send whose key has no
    lookup (a BizId send of an international-site account, which has no QuerySendDetails)
    is never asked about: it stays pending until its horizon expires it."""

    def __init__(
        self,
        lookups: Mapping[domain.SendKey, ports.StatusLookup],
        limiters: Mapping[domain.SendKey, ports.RateLimiter] | None = None,
    ) -> None:
        providers = {lookup.provider for lookup in lookups.values()}
        if len(providers) != 1:  # also: none at all
            raise ValueError(f"one provider's lookups only, got {sorted(providers)}")
        self.lookups = dict(lookups)
        self.limiters = dict(limiters or {})

    @property
    def provider(self) -> domain.Provider:
        return next(iter(self.lookups.values())).provider

    def in_window(self, send: ports.PendingSend, now: datetime) -> bool:
        lookup = self.lookups.get(send.matched_by)
        return lookup is None or lookup.in_window(send, now)

    def oldest_send_date(self, now: datetime) -> date:
        """The oldest date every key's lookup can still answer for (bulk expiry)."""
        dates = [
            lookup.oldest_send_date(now)
            for lookup in self.lookups.values()
            if isinstance(lookup, WindowedLookup)
        ]
        return min(dates) if dates else date.min

    def plan(self, sends: Sequence[ports.PendingSend]) -> tuple[planning.PlannedQuery, ...]:
        planned: list[planning.PlannedQuery] = []
        for key, group in _by_key(sends).items():
            lookup = self.lookups.get(key)
            if isinstance(lookup, planning.PlanningLookup):
                planned.extend(lookup.plan(group))
        return tuple(planned)

    def lookup(
        self, sends: Sequence[ports.PendingSend], limiter: ports.RateLimiter
    ) -> ports.LookupResult:
        """Each key's sends to its lookup. Raises only when every key's lookup raised (then
        nothing was looked up); otherwise the failure is counted and the rest returned."""
        settlements: list[ports.Settlement] = []
        calls: dict[str, int] = {}
        failures: list[ports.StatusLookupError] = []
        groups = {k: g for k, g in _by_key(sends).items() if k in self.lookups}
        for key, group in groups.items():
            lookup = self.lookups[key]
            try:
                result = lookup.lookup(group, self.limiters.get(key, limiter))
            except ports.StatusLookupError as exc:
                failures.append(exc)
                continue
            settlements.extend(result.settlements)
            for outcome, n in result.calls.items():
                calls[outcome] = calls.get(outcome, 0) + n
        if failures and len(failures) == len(groups):
            raise failures[0]
        for failed in failures:  # partial progress: each failed key counts one failed call
            outcome = outcome_of(failed)
            calls[outcome] = calls.get(outcome, 0) + 1
        return ports.LookupResult(settlements, calls)


def _by_key(sends: Sequence[ports.PendingSend]) -> dict[domain.SendKey, list[ports.PendingSend]]:
    groups: dict[domain.SendKey, list[ports.PendingSend]] = {}
    for send in sends:
        groups.setdefault(send.matched_by, []).append(send)
    return groups
