"""Pure call planning for QuerySendDetails-style lookups: which queries cover which sends.

A query names one phone number and one provider date. With a BizId it returns exactly that
send; without one it returns every send to that phone on that date, and a detail row carries
no BizId — so a row can be attributed to a claimed send only through a unique OutId. The rules:

* a single send for a (phone, date) → one query by BizId;
* several sends whose OutIds are all set and unique within the group → one paged query
  without BizId, rows matched by OutId;
* otherwise → one query per BizId.

Matching is exact or nothing: a send whose OutId matches zero or several rows is not given a
status; it falls back to a query by BizId. No I/O here; see
tests/unit/compensation/test_planning.py.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol, runtime_checkable

from receiptd import domain, ports


class QueryKind(enum.StrEnum):
    BIZ_ID = "biz_id"
    OUT_ID = "out_id"
    MESSAGE_ID = "message_id"  # QueryMessage (2018-05-01), one send per call


@dataclass(frozen=True, slots=True)
class PlannedQuery:
    """One (possibly paged) query and the claimed sends it answers for."""

    phone_number: str
    send_date: date
    biz_id: str | None  # None: a group query matched by OutId
    sends: tuple[ports.PendingSend, ...]
    matched_by: domain.SendKey = domain.SendKey.BIZ_ID  # biz_id holds a MessageId otherwise

    @property
    def kind(self) -> QueryKind:
        if self.biz_id is None:
            return QueryKind.OUT_ID
        return (
            QueryKind.MESSAGE_ID
            if self.matched_by is domain.SendKey.MESSAGE_ID
            else QueryKind.BIZ_ID
        )


@dataclass(frozen=True, slots=True)
class Detail:
    """One row of a query answer (SmsSendDetailDTO), reduced to what matching needs."""

    send_status: int  # 1 waiting for receipt, 2 failed, 3 delivered
    out_id: str | None = None
    err_code: str | None = None


@dataclass(frozen=True, slots=True)
class Match:
    """What one query's rows say: settlements (final or pending), and sends to re-query."""

    settlements: tuple[ports.Settlement, ...] = ()
    fallback: tuple[ports.PendingSend, ...] = ()


def status_of(send_status: int) -> domain.SendStatus:
    """SendStatus 3 → delivered, 2 → failed, anything else (1) → still pending."""
    if send_status == 3:
        return domain.SendStatus.DELIVERED
    if send_status == 2:
        return domain.SendStatus.FAILED
    return domain.SendStatus.PENDING


def plan(sends: Iterable[ports.PendingSend]) -> tuple[PlannedQuery, ...]:
    """The fewest queries that cover every send exactly once (deterministic order)."""
    groups: dict[tuple[str, date], list[ports.PendingSend]] = {}
    for send in sends:
        groups.setdefault((send.phone_number, send.send_date), []).append(send)
    queries: list[PlannedQuery] = []
    for (phone, day), members in sorted(groups.items()):
        members.sort(key=lambda s: (s.sent_at, s.id))
        if len(members) > 1 and _out_ids_unique(members):
            queries.append(PlannedQuery(phone, day, None, tuple(members)))
        else:
            queries.extend(by_biz_id(members))
    return tuple(queries)


def by_biz_id(
    sends: Iterable[ports.PendingSend], key: domain.SendKey = domain.SendKey.BIZ_ID
) -> list[PlannedQuery]:
    """One query per send by its id (a BizId: also the fallback for sends a group query could
    not match; a MessageId: QueryMessage's only form)."""
    return [PlannedQuery(s.phone_number, s.send_date, s.biz_id, (s,), key) for s in sends]


def _out_ids_unique(sends: Sequence[ports.PendingSend]) -> bool:
    out_ids = [s.out_id for s in sends]
    return all(out_ids) and len(set(out_ids)) == len(out_ids)


def match(query: PlannedQuery, details: Sequence[Detail]) -> Match:
    """Attribute rows to the query's sends, only where the attribution is exact."""
    if query.biz_id is not None:
        return _match_biz_id(query.sends[0], details)
    per_out_id = Counter(d.out_id for d in details if d.out_id)
    settlements: list[ports.Settlement] = []
    fallback: list[ports.PendingSend] = []
    for send in query.sends:
        if send.out_id and per_out_id[send.out_id] == 1:
            row = next(d for d in details if d.out_id == send.out_id)
            settlements.append(settlement(send, row))
        else:
            fallback.append(send)
    return Match(tuple(settlements), tuple(fallback))


def _match_biz_id(send: ports.PendingSend, details: Sequence[Detail]) -> Match:
    # With BizId the provider narrows the answer to this send. Several rows that disagree
    # (should not happen) are not attributed: the send stays pending and is asked again later.
    statuses = {(d.send_status, d.err_code) for d in details}
    if len(statuses) != 1:
        return Match()
    return Match((settlement(send, details[0]),))


def settlement(send: ports.PendingSend, row: Detail) -> ports.Settlement:
    status = status_of(row.send_status)
    return ports.Settlement(
        send_id=send.id,
        status=status,
        settled_by=domain.SettledBy.QUERY,
        err_code=row.err_code if status.is_final else None,
    )


def pages(total_count: int, page_size: int) -> int:
    """Pages a query of ``total_count`` rows takes (at least one: the first tells the total)."""
    return max(1, -(-total_count // page_size))


@dataclass(frozen=True, slots=True)
class ProviderPlan:
    """What a cycle would do for one provider now (``compensate --dry-run``)."""

    provider: str
    due: int
    expire: int  # claimed but outside the provider's window: expired without a call
    queries: tuple[PlannedQuery, ...]
    account: str = domain.DEFAULT_ACCOUNT


@runtime_checkable
class PlanningLookup(Protocol):
    """Optional part of a StatusLookup: show its call plan without calling."""

    def plan(self, sends: Sequence[ports.PendingSend]) -> Sequence[PlannedQuery]: ...
