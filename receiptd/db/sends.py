"""The send registry: registering sends, claiming due ones, settling them, summaries."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo
from operator import attrgetter
from typing import Any

from sqlalchemy import (
    Connection,
    DateTime,
    and_,
    bindparam,
    func,
    or_,
    select,
    type_coerce,
    update,
)

from receiptd import domain, metrics, ports
from receiptd.compensation import horizon as _horizon
from receiptd.db import counts, lookup, outbox, settle, subset, upsert
from receiptd.db.models import (
    DEAD,
    INBOUND,
    REPORT,
    RUN,
    SEND,
    SEND_KEYED,
    SEND_SCOPE,
    claim_released,
)
from receiptd.db.store import SqlStore, settle_from_reports

PENDING = domain.SendStatus.PENDING.value
# A send's unique key up to the id, for the status API's lookup by id (by_biz_id).
_SENDS_BY_ID = lookup.KeyLookup(SEND, (), ("provider", "account", "matched_by", "biz_id"))
# A receipt's unique key, the account first (receiptd.db.lookup: exact on PostgreSQL).
_REPORTS_BY_KEY = lookup.KeyLookup(REPORT, ("account",), ("matched_by", "biz_id", "phone_number"))


class SendStore:
    """``ports.SendStore`` on top of :class:`SqlStore`; every method is one short transaction.

    Also serves the status API (``by_biz_id``), which is not the compensator's business.
    """

    def __init__(self, store: SqlStore, tz: tzinfo = domain.CHINA_TZ) -> None:
        self.store = store
        self.tz = tz

    # --- registration ----------------------------------------------------------------------

    def register(self, sends: Sequence[ports.NewSend], now: datetime) -> int:
        """Insert new sends (existing ones are left alone) and settle any that already have a
        stored receipt (a receipt can beat its send's registration). Returns rows inserted."""
        added: dict[counts.Key, int] = {}
        inserted = self.store.run(lambda conn: self._register(conn, sends, now, added))
        for (provider, account, _status, _by), n in added.items():  # committed: count them
            metrics.SENDS_REGISTERED.labels(provider, account).inc(n)
        return inserted

    def _register(
        self,
        conn: Connection,
        sends: Sequence[ports.NewSend],
        now: datetime,
        added: dict[counts.Key, int],
    ) -> int:
        rows = [self._send_row(s, now) for s in sends]
        scopes: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in rows:
            scopes.setdefault((row["provider"], row["account"]), []).append(row)
        added.clear()  # a retried transaction starts again
        for (provider, account), scoped in sorted(scopes.items()):
            added[provider, account, PENDING, ""] = upsert.insert_ignore(
                conn, SEND, scoped, (*SEND_SCOPE, *SEND_KEYED)
            )
        counts.record(conn, added)  # before any of them settles: settling moves them on
        for account in sorted({r["account"] for r in rows}):
            self._settle_from_stored_reports(conn, rows, account, now)
        return sum(added.values())

    def _settle_from_stored_reports(
        self, conn: Connection, rows: list[dict[str, Any]], account: str, now: datetime
    ) -> None:
        """A receipt can beat its send's registration: the account's stored receipts for
        these Aliyun sends settle them now."""
        aliyun = {
            (r["matched_by"], r["biz_id"], r["phone_number"])
            for r in rows
            if r["provider"] == domain.Provider.ALIYUN.value and r["account"] == account
        }
        if not aliyun:
            return
        params = _REPORTS_BY_KEY.params(conn, {"account": account}, sorted(aliyun))
        stored = conn.execute(_REPORTS_BY_KEY.rows(conn), params).all()
        reports = [
            _report_of(r._mapping)
            for r in stored
            if (r.matched_by, r.biz_id, r.phone_number) in aliyun
        ]
        settle_from_reports(conn, reports, now, self.store.events, account=account)

    def _send_row(self, send: ports.NewSend, now: datetime) -> dict[str, Any]:
        return {
            "provider": send.provider.value,
            "account": send.account,
            "matched_by": send.matched_by.value,
            "biz_id": send.biz_id,
            # Aliyun receipts carry 11 digits (international: country code and digits); a
            # +86 form would never match its receipt.
            "phone_number": (
                domain.normalize_number(send.phone_number, send.matched_by)
                if send.provider is domain.Provider.ALIYUN
                else send.phone_number
            ),
            "out_id": send.out_id,
            "task_id": send.task_id,
            "template_code": send.template_code,
            "sign_name": send.sign_name,
            "sent_at": send.sent_at,
            "send_date": domain.provider_send_date(send.sent_at, self.tz),
            "status": PENDING,
            "check_count": 0,
            "created_at": now,
            "updated_at": now,
        }

    # --- compensation ----------------------------------------------------------------------

    def claim_due(
        self,
        provider: domain.Provider,
        now: datetime,
        grace: timedelta,
        limit: int,
        lease: timedelta = ports.CLAIM_LEASE,
        *,
        account: str = domain.DEFAULT_ACCOUNT,
    ) -> list[ports.PendingSend]:
        """Claim up to ``limit`` due pending sends for this replica.

        ``FOR UPDATE SKIP LOCKED`` keeps concurrent replicas off each other's rows on
        PostgreSQL/MariaDB; the conditional UPDATE with a fresh token makes the claim exact
        everywhere (SQLite ignores SKIP LOCKED but has a single writer).
        """
        token = uuid.uuid4().hex
        return self.store.run(
            lambda conn: self._claim(
                conn, _due(provider, account, now, grace), now, limit, lease, token
            )
        )

    def _claim(
        self,
        conn: Connection,
        due: Any,
        now: datetime,
        limit: int,
        lease: timedelta,
        token: str,
    ) -> list[ports.PendingSend]:
        free, until = _unclaimed(now), now + lease
        ids_query = select(SEND.c.id).where(due).order_by(SEND.c.sent_at).limit(limit)
        ids_query = ids_query.with_for_update(skip_locked=True)
        claim = update(SEND).values(claimed_by=token, claimed_until=until)
        if conn.dialect.update_returning:  # PostgreSQL, SQLite: one round trip (docs/scale.md)
            stmt = claim.where(subset.id_in(conn, SEND.c.id, ids_query)).returning(*_PENDING)
            return _oldest_first(_pending_sends(conn.execute(stmt).all()))
        ids = list(conn.execute(ids_query).scalars())  # MariaDB: no LIMIT in an IN subquery
        claimed: list[ports.PendingSend] = []
        for chunk in _chunks(ids, 500):
            conn.execute(claim.where(SEND.c.id.in_(chunk), free, SEND.c.status == PENDING))
            mine = select(*_PENDING).where(SEND.c.id.in_(chunk), SEND.c.claimed_by == token)
            claimed.extend(_pending_sends(conn.execute(mine).all()))
        return _oldest_first(claimed)

    def peek_due(
        self,
        provider: domain.Provider,
        now: datetime,
        grace: timedelta,
        limit: int,
        *,
        account: str = domain.DEFAULT_ACCOUNT,
    ) -> list[ports.PendingSend]:
        """The sends ``claim_due`` would claim now, read without claiming (``--dry-run``)."""
        due = _due(provider, account, now, grace)
        query = select(*_PENDING).where(due).order_by(SEND.c.sent_at)
        return self.store.run(lambda conn: _pending_sends(conn.execute(query.limit(limit)).all()))

    def expire_outside_window(
        self,
        provider: domain.Provider,
        oldest: date,
        now: datetime,
        *,
        account: str = domain.DEFAULT_ACCOUNT,
    ) -> int:
        """Settle as expired every pending send of the account older than the query window."""
        query = select(SEND.c.id).where(
            SEND.c.provider == provider.value,
            SEND.c.account == account,
            SEND.c.status == PENDING,
            SEND.c.send_date < oldest,
        )
        expired, window = domain.SendStatus.EXPIRED, domain.SettledBy.WINDOW

        def expire(conn: Connection) -> int:
            changes = [settle.SendChange(i, expired, window) for i in conn.execute(query).scalars()]
            return settle.settle_sends(conn, changes, now, self.store.events)

        return self.store.run(expire)

    def settle(
        self,
        settlements: Sequence[ports.Settlement],
        pending: Sequence[ports.PendingSend],
        now: datetime,
        base_backoff: float,
        max_backoff: float,
        horizon: timedelta | None = None,
    ) -> int:
        """Apply final statuses; every other claimed send gets its next check pushed back
        (``receiptd.compensation.horizon.next_check_at``: backoff, at most to the send's horizon).

        Returns the number of sends that reached a final status.
        """
        final = [s for s in settlements if s.status.is_final]
        done = {s.send_id for s in final}
        schedule = _horizon.Schedule(base_backoff, max_backoff, horizon)
        retry = [
            {"b_id": p.id, "b_next": _horizon.next_check_at(p, now, schedule), "b_now": now}
            for p in pending
            if p.id not in done
        ]
        events = self.store.events
        return self.store.run(lambda conn: _apply(conn, final, retry, now, events))

    # --- runs and summaries ----------------------------------------------------------------

    def start_run(self, replica: str, now: datetime) -> int:
        stmt = RUN.insert().values(
            replica=replica, started_at=now, claimed=0, calls=0, settled=0, expired=0, errors=0
        )
        return self.store.run(lambda conn: int(conn.execute(stmt).inserted_primary_key[0]))  # type: ignore[index]

    def finish_run(self, run_id: int, now: datetime, **counts: int) -> None:
        stmt = update(RUN).where(RUN.c.id == run_id).values(finished_at=now, **counts)
        self.store.run(lambda conn: conn.execute(stmt))

    def summary(self) -> ports.StatusSummary:
        return self.store.run(_summary)

    def squash_counts(self, batches: int = 10) -> int:
        """Fold the send counts' delta rows (receiptd.db.counts.squash), up to ``batches``
        transactions of them; returns the rows folded."""
        folded = 0
        for _ in range(batches):
            n = self.store.run(counts.squash)
            folded += n
            if n < counts.SQUASH_BATCH:
                break
        return folded

    def by_biz_id(
        self,
        biz_id: str,
        account: str | None = None,
        matched_by: domain.SendKey | None = None,
    ) -> list[dict[str, Any]]:
        """Every send with this id, a BizId or a MessageId (each account's; ``account``
        narrows to one account, ``matched_by`` to one kind of id).

        No index begins with ``biz_id`` (the unique key begins with provider and account):
        ``WHERE biz_id = …`` alone was a sequential scan of every send (38 ms at 300,000
        rows). The providers and accounts that have sends come from the send counts (a few
        rows), each (provider, account, kind) with the id is one bounded lookup of the unique
        key (receiptd.db.lookup)."""
        kinds = [matched_by.value] if matched_by else [k.value for k in domain.SendKey]

        def read(conn: Connection) -> list[dict[str, Any]]:
            scopes = {(p, a) for p, a, _, _ in counts.totals(conn, account)}
            keys = [(p, a, kind, biz_id) for p, a in sorted(scopes) for kind in kinds]
            if not keys:
                return []
            query = _SENDS_BY_ID.rows(conn).order_by(SEND.c.account, SEND.c.phone_number)
            return [
                dict(r._mapping) for r in conn.execute(query, _SENDS_BY_ID.params(conn, {}, keys))
            ]

        return self.store.run(read)


_RETRY = (
    update(SEND)
    .where(SEND.c.id == bindparam("b_id"))  # locked and still pending: _apply checks
    .values(
        next_check_at=bindparam("b_next"),
        check_count=SEND.c.check_count + 1,
        **claim_released(bindparam("b_now")),
    )
)


def _apply(
    conn: Connection,
    final: Sequence[ports.Settlement],
    retry: list[dict[str, Any]],
    now: datetime,
    events: outbox.Outbox | None,
) -> int:
    changes = [
        settle.SendChange(s.send_id, s.status, s.settled_by, s.err_code, s.err_msg) for s in final
    ]
    # Every claimed row this transaction writes, locked first in id order (settled and backed
    # off alike): two orders of locking would deadlock with a concurrent receipt's settle.
    locked = settle.lock_ids(
        conn, sorted({c.send_id for c in changes} | {r["b_id"] for r in retry})
    )
    settled = settle.settle_sends(conn, changes, now, events, count_check=True, locked=locked)
    retry = [r for r in retry if locked.get(r["b_id"], {}).get("status") == PENDING]
    if retry:
        conn.execute(_RETRY, sorted(retry, key=lambda r: r["b_id"]))
    return settled


def _summary(conn: Connection) -> ports.StatusSummary:
    """From the send counts (receiptd.db.counts) and indexes: no scan of ``sms_send``."""
    settled = counts.totals(conn)
    totals: dict[tuple[str, str, str], int] = {}
    for (provider, account, status, _by), n in settled.items():
        totals[provider, account, status] = totals.get((provider, account, status), 0) + n
    last = conn.execute(select(RUN).order_by(RUN.c.id.desc()).limit(1)).first()
    return ports.StatusSummary(
        counts=totals,
        settled=settled,
        oldest_pending=_oldest_pending(conn, totals),
        last_run_started=last.started_at if last else None,
        last_run_finished=last.finished_at if last else None,
        dead_letters=_count(conn, DEAD, DEAD.c.replayed_at.is_(None)),
        inbound=_count(conn, INBOUND),
    )


def _oldest_pending(
    conn: Connection, totals: dict[tuple[str, str, str], int]
) -> dict[tuple[str, str], datetime]:
    """The oldest pending send of each (provider, account) that has one: one seek each on
    the claim index (status, provider, account, sent_at), its first entry."""
    oldest: dict[tuple[str, str], datetime] = {}
    for provider, account, status in sorted(totals):
        if status != PENDING:
            continue
        first = conn.execute(
            select(func.min(SEND.c.sent_at)).where(
                SEND.c.status == PENDING, SEND.c.provider == provider, SEND.c.account == account
            )
        ).scalar_one()
        if first is not None:
            oldest[provider, account] = first
    return oldest


def _unclaimed(now: datetime) -> Any:
    return or_(SEND.c.claimed_until.is_(None), SEND.c.claimed_until < now)


def _due(provider: domain.Provider, account: str, now: datetime, grace: timedelta) -> Any:
    """One account's sends that are pending, past the grace period, next check reached, and
    not claimed by anyone."""
    return and_(
        SEND.c.provider == provider.value,
        SEND.c.account == account,
        SEND.c.status == PENDING,
        SEND.c.sent_at <= now - grace,
        or_(SEND.c.next_check_at.is_(None), SEND.c.next_check_at <= now),
        _unclaimed(now),
    )


def _count(conn: Connection, table: Any, where: Any = None) -> int:
    query = select(func.count()).select_from(table)
    if where is not None:
        query = query.where(where)
    return int(conn.execute(query).scalar_one())


def _oldest_first(sends: Iterable[ports.PendingSend]) -> list[ports.PendingSend]:
    """In claim order (RETURNING and the chunked reads give rows in no particular order)."""
    return sorted(sends, key=_CLAIM_ORDER)


_CLAIM_ORDER = attrgetter("sent_at", "id")


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _report_of(row: Any) -> domain.SmsReport:
    return domain.SmsReport(
        biz_id=row["biz_id"],
        phone_number=row["phone_number"],
        success=bool(row["success"]),
        send_time=row["send_time"],
        err_code=row["err_code"],
        err_msg=row["err_msg"],
        matched_by=domain.SendKey(row["matched_by"]),
    )


# The columns a PendingSend needs (claims read nothing else: 5,000 rows a time), in the order
# _pending_sends unpacks them. ``sent_at`` is read as the plain DateTime it is stored as (naive
# UTC) and made aware in _pending_sends, as UTCDateTime's result processor would, but without
# its two calls per row and with ``datetime.combine``: ``replace(tzinfo=UTC)`` costs 7 times as
# much (2.6 against 0.37 ms for 5,000).
_PENDING = [
    SEND.c.id, SEND.c.provider, SEND.c.account, SEND.c.biz_id, SEND.c.phone_number,
    type_coerce(SEND.c.sent_at, DateTime()).label("sent_at"), SEND.c.send_date, SEND.c.out_id,
    SEND.c.template_code, SEND.c.check_count, SEND.c.matched_by,
]  # fmt: skip


class _ByValue(dict[str, Any]):
    """An enum's members by value: a dict hit instead of ``Enum(value)``'s lookup machinery
    (5,000 rows a claim, two enums each); an unknown value still raises the enum's ValueError."""

    def __init__(self, members: type[enum.Enum]) -> None:
        super().__init__((m.value, m) for m in members)
        self.members = members

    def __missing__(self, value: str) -> Any:
        return self.members(value)


_PROVIDERS = _ByValue(domain.Provider)
_SEND_KEYS = _ByValue(domain.SendKey)


def _pending_sends(rows: Iterable[Sequence[Any]]) -> list[ports.PendingSend]:
    """Rows of ``_PENDING`` as PendingSends: unpacked by position, enums from a dict, the
    dataclass built positionally (5,000 rows: 14.5 ms through ``Row._mapping``, keywords and
    ``Enum(value)``, now 5.5 ms; docs/scale.md). The arguments are in PendingSend's field
    order (tests/integration/test_send_store_contract.py compares whole values)."""
    combine = datetime.combine
    return [
        ports.PendingSend(
            send_id, _PROVIDERS[provider], biz_id, phone_number,
            combine(sent_at, sent_at.time(), UTC), send_date, out_id, template_code,
            check_count, account, _SEND_KEYS[matched_by],
        )
        for (
            send_id, provider, account, biz_id, phone_number, sent_at, send_date,
            out_id, template_code, check_count, matched_by,
        ) in rows
    ]  # fmt: skip
