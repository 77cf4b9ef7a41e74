"""The status horizon (pure): when a pending send is asked again, and when receiptd stops asking.

Alibaba reports a message whose receipt has not come after 72 hours as status unknown; Huawei
builds an EXPIRED report after 72 hours (docs/providers/aliyun-sms.md, "The status horizon").
Asking about a send that is still "waiting for receipt" after that mostly costs calls. So each
provider has a horizon (``timedelta``; ``None`` = none: ask until the provider's query window
ends):

* a still-pending send is asked again after the usual backoff (``compensator_interval``
  doubling per check, capped at ``compensator_max_backoff``), never later than its horizon;
  its 10th check (:data:`MAX_CALLS`) is the one at the horizon, so a send is asked at most 10
  times (defaults: at 0.2, 0.3, 0.7, 1.3, 2.7, 5.3, 10.7, 16.7, 22.7 and 72 hours);
* a send claimed at or past its horizon gets that one last query; still pending (or unknown to
  a provider that answered every call) it becomes ``expired`` with ``settled_by = horizon``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from receiptd import domain, ports

DEFAULT_HORIZON = timedelta(hours=72)
MAX_CALLS = 10  # checks over the whole life of a send that never settles


@dataclass(frozen=True, slots=True)
class Schedule:
    """How still-pending sends are re-checked: seconds of backoff, and the horizon."""

    base: float
    cap: float
    horizon: timedelta | None = None
    max_calls: int = MAX_CALLS


def deadline(sent_at: datetime, horizon: timedelta | None) -> datetime | None:
    """The moment of a send's last query, or None without a horizon."""
    return None if horizon is None else sent_at + horizon


def reached(send: ports.PendingSend, now: datetime, horizon: timedelta | None) -> bool:
    """True when this query is the send's last one (it is at or past its horizon)."""
    last = deadline(send.sent_at, horizon)
    return last is not None and now >= last


def next_check_at(send: ports.PendingSend, now: datetime, schedule: Schedule) -> datetime:
    """When a send still pending after its check number ``send.check_count + 1`` (made at
    ``now``) is asked again.

    The plain backoff (``compensator_max_backoff`` stays the longest wait), never past the
    horizon; and once the checks before the last one are spent, the next is the last one, at
    the horizon. So a send is asked at most ``max_calls`` times whatever the interval and cap.
    """
    delay = timedelta(seconds=domain.backoff_delay(send.check_count, schedule.base, schedule.cap))
    last = deadline(send.sent_at, schedule.horizon)
    if last is None or now >= last:
        return now + delay
    if send.check_count + 2 >= schedule.max_calls:  # this was the last check before the last
        return last
    return min(last, now + delay)


def verdicts(
    last_chance: Sequence[ports.PendingSend], result: ports.LookupResult
) -> list[ports.Settlement]:
    """``expired``/``horizon`` for the sends whose last query found them still pending.

    A send counts as still pending when the provider answered "waiting" for it, or when it
    did not appear in an answer where every call succeeded (the provider does not know it).
    A send whose call failed is not judged: it stays pending and is asked again.
    """
    answered = {s.send_id: s.status for s in result.settlements}
    all_ok = all(result_kind == "ok" for result_kind, n in result.calls.items() if n)
    return [
        ports.Settlement(send.id, domain.SendStatus.EXPIRED, domain.SettledBy.HORIZON)
        for send in last_chance
        if answered.get(send.id) is domain.SendStatus.PENDING
        or (send.id not in answered and all_ok)
    ]
