"""The send registry's summary as plain data: what ``receiptd status --json`` prints and
``GET /v1/status`` answers (:func:`report`; the shape is documented in docs/operations.md), and
the counts ``GET /v1/stats`` answers (:func:`stats`; docs/api.md). Pure.

``sends`` and ``oldest_pending_seconds`` are per provider (every account together, as before
accounts existed); ``accounts`` breaks them down per (provider, account). With ``account``
given, every count is that account's alone (of each provider that has one by that name).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from receiptd import ports


def report(
    summary: ports.StatusSummary, now: datetime, account: str | None = None
) -> dict[str, Any]:
    """The summary as JSON-ready data; ``account`` narrows the send counts to one account."""
    counts = {key: n for key, n in summary.counts.items() if account is None or key[1] == account}
    oldest_at = {
        key: at
        for key, at in summary.oldest_pending.items()
        if account is None or key[1] == account
    }
    narrowed = dataclasses.replace(summary, counts=counts, oldest_pending=oldest_at)
    return {
        "sends": _per_provider(narrowed),
        "oldest_pending_seconds": _oldest_per_provider(oldest_at, now),
        "accounts": _per_account(counts, oldest_at, now),
        "last_run_started": _iso(summary.last_run_started),
        "last_run_finished": _iso(summary.last_run_finished),
        "dead_letters": summary.dead_letters,
        "inbound": summary.inbound,
    }


def stats(
    summary: ports.StatusSummary, now: datetime, account: str | None = None
) -> dict[str, Any]:
    """``GET /v1/stats``: sends per (provider, account, status, settled_by), the oldest
    pending send per (provider, account), dead letters and replies, as of ``now``; with
    ``account``, the sends of that account alone (of each provider with one by that id).

    ``settled_by`` is null while a send is pending, as ``GET /v1/sends/{biz_id}`` has it."""
    counts = [
        {"provider": p, "account": a, "status": s, "settled_by": by or None, "sends": n}
        for (p, a, s, by), n in sorted(summary.settled.items())
        if account is None or a == account
    ]
    oldest = [
        {"provider": p, "account": a, "sent_at": _iso(at)}
        for (p, a), at in sorted(summary.oldest_pending.items())
        if account is None or a == account
    ]
    return {
        "counts": counts,
        "oldest_pending": oldest,
        "dead_letters": summary.dead_letters,
        "inbound": summary.inbound,
        "generated_at": _iso(now),
    }


def _per_provider(summary: ports.StatusSummary) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (provider, status), n in sorted(summary.by_provider().items()):
        out.setdefault(provider, {})[status] = n
    return out


def _oldest_per_provider(
    oldest_at: dict[tuple[str, str], datetime], now: datetime
) -> dict[str, int]:
    first: dict[str, datetime] = {}
    for (provider, _account), at in oldest_at.items():
        first[provider] = min(first.get(provider, _aware(at)), _aware(at))
    return {provider: _seconds(now, at) for provider, at in sorted(first.items())}


def _per_account(
    counts: dict[tuple[str, str, str], int],
    oldest_at: dict[tuple[str, str], datetime],
    now: datetime,
) -> list[dict[str, Any]]:
    """One entry per (provider, account) with sends: its counts by status and the age of its
    oldest pending send (None without one), sorted by provider then account."""
    scopes = sorted({(provider, account) for provider, account, _ in counts})
    return [_account_entry(scope, counts, oldest_at.get(scope), now) for scope in scopes]


def _account_entry(
    scope: tuple[str, str],
    counts: dict[tuple[str, str, str], int],
    oldest_at: datetime | None,
    now: datetime,
) -> dict[str, Any]:
    return {
        "provider": scope[0],
        "account": scope[1],
        "sends": {s: n for (p, a, s), n in sorted(counts.items()) if (p, a) == scope},
        "oldest_pending_seconds": None if oldest_at is None else _seconds(now, oldest_at),
    }


def _seconds(now: datetime, at: datetime) -> int:
    return round((now - _aware(at)).total_seconds())


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else _aware(moment).isoformat()
