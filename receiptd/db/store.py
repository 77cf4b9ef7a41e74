"""The consumer's store: receipts, replies and dead letters, one transaction per batch."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, select, text, update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError, StatementError

from receiptd import domain, error_families, errors, metrics, ports
from receiptd.db import lookup, outbox, settle, upsert
from receiptd.db.models import DEAD, INBOUND, REPORT, SEND, SEND_KEYED, SEND_SCOPE
from receiptd.logs import get_logger

T = TypeVar("T")
log = get_logger(__name__)


@contextmanager
def translate_errors() -> Iterator[None]:
    """Driver errors become the two store errors the core understands."""
    try:
        yield
    except DBAPIError as exc:
        if exc.connection_invalidated or _is_connection_error(exc):
            raise ports.StoreUnavailable(describe_error(exc)) from exc
        raise ports.StoreWriteError(describe_error(exc)) from exc
    except StatementError as exc:
        # A value the statement could not be built from (a bind processor raised): the data
        # is refused, the database was never asked. Not an outage: retrying cannot help.
        raise ports.StoreWriteError(describe_error(exc)) from exc
    except SQLAlchemyError as exc:
        raise ports.StoreUnavailable(describe_error(exc)) from exc
    except UnicodeError as exc:
        # The driver could not encode a value for the wire (e.g. a lone surrogate: SQLite,
        # psycopg and PyMySQL all raise UnicodeEncodeError, not a DB-API error).
        raise ports.StoreWriteError(describe_error(exc)) from exc


def _is_connection_error(exc: DBAPIError) -> bool:
    from sqlalchemy.exc import InterfaceError, OperationalError

    return isinstance(exc, OperationalError | InterfaceError)


def describe_error(exc: Exception) -> str:
    """The driver's own first line (e.g. 'connection refused'), not SQLAlchemy's wrapper."""
    return errors.describe(exc, cause="orig", line_limit=300)


class SqlStore:
    """Everything the consumer and the status commands need from the database."""

    def __init__(self, engine: Engine, events: outbox.Outbox | None = None) -> None:
        self.engine = engine
        self.events = events  # None: no webhook endpoint, no events written

    def run(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one transaction with errors translated for the core."""
        with translate_errors(), self.engine.begin() as conn:
            return work(conn)

    def ping(self) -> None:
        with translate_errors(), self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    # --- consumer --------------------------------------------------------------------------

    def write_batch(self, batch: ports.Batch, now: datetime) -> ports.BatchResult:
        result, new = self.run(lambda conn: self._write_batch(conn, batch, now))
        observe_new_receipts(new)  # committed: what the metrics count happened
        return result

    def _write_batch(
        self, conn: Connection, batch: ports.Batch, now: datetime
    ) -> tuple[ports.BatchResult, list[ports.ReportRecord]]:
        rows = [_report_row(r, now) for r in batch.reports]
        report_ids = upsert.insert_ignore_ids(conn, REPORT, rows, REPORT_KEY)
        reports_new = len(report_ids)
        settled = sum(
            settle_from_reports(conn, reports, now, self.events, provider, account=account)
            for (provider, account), reports in _by_account(batch.reports).items()
        )
        inbound_ids = upsert.insert_ignore_ids(
            conn, INBOUND, [_inbound_row(r, now) for r in batch.inbound], INBOUND_KEY
        )
        outbox.replies_stored(conn, inbound_ids, now, self.events)
        inbound_new = len(inbound_ids)
        dead_new = sum(self._dead_letter(conn, d, now) for d in batch.dead)
        new = _new_records(conn, batch.reports, report_ids)
        return ports.BatchResult(reports_new, inbound_new, dead_new, settled), new

    @staticmethod
    def _dead_letter(conn: Connection, dead: ports.DeadRecord, now: datetime) -> int:
        # Any bytes fit the raw column; the text columns get printable text (no NUL, which
        # PostgreSQL text cannot hold, no lone surrogate, which no driver can encode), so a
        # dead letter is never refused for what the body or the reason holds.
        row = {
            "account": dead.account,
            "queue": domain.printable(dead.queue, 128),
            "mns_message_id": domain.printable(dead.message_id, 64),
            "raw_body": bytes(dead.raw_body),
            "error": domain.printable(dead.error),
            "first_seen": now,
            "last_seen": now,
            "seen_count": 1,
        }
        new = upsert.upsert_count(
            conn,
            DEAD,
            row,
            ("account", "queue", "mns_message_id"),
            "seen_count",
            ("last_seen", "error"),
        )
        return int(new)

    # --- dead letters ----------------------------------------------------------------------

    def dead_letters(
        self, limit: int = 100, include_replayed: bool = False, account: str | None = None
    ) -> list[DeadLetterView]:
        """Dead letters by id (unreplayed ones unless ``include_replayed``; ``account``'s
        alone when given)."""
        query = select(DEAD).order_by(DEAD.c.id).limit(limit)
        if not include_replayed:
            query = query.where(DEAD.c.replayed_at.is_(None))
        if account is not None:
            query = query.where(DEAD.c.account == account)
        return self.run(lambda conn: [DeadLetterView(**r._mapping) for r in conn.execute(query)])

    def dead_letter(self, dead_id: int) -> DeadLetterView | None:
        query = select(DEAD).where(DEAD.c.id == dead_id)
        row = self.run(lambda conn: conn.execute(query).first())
        return None if row is None else DeadLetterView(**row._mapping)

    def mark_replayed(self, dead_id: int, now: datetime) -> None:
        stmt = update(DEAD).where(DEAD.c.id == dead_id).values(replayed_at=now)
        self.run(lambda conn: conn.execute(stmt))


@dataclass(frozen=True, slots=True)
class DeadLetterView:
    id: int
    account: str
    queue: str
    mns_message_id: str
    raw_body: bytes
    error: str
    first_seen: datetime
    last_seen: datetime
    seen_count: int
    replayed_at: datetime | None


def _report_row(record: ports.ReportRecord, now: datetime) -> dict[str, Any]:
    r = record.report
    return {
        "account": record.account,
        "mns_message_id": _mns_id(record.message_id, record.channel),
        "matched_by": r.matched_by.value,
        "biz_id": r.biz_id,
        "phone_number": r.phone_number,
        "success": r.success,
        "out_id": r.out_id,
        "send_time": r.send_time,
        "report_time": r.report_time,
        "err_code": r.err_code,
        "err_msg": r.err_msg,
        "sms_size": r.sms_size,
        "received_at": now,
        "channel": record.channel.value,
        "provider": r.provider.value,
        "message_id": r.message_id,
        "sign_name": r.sign_name,
        "template_code": r.template_code,
        "shape": r.shape.value,
        "task_id": r.task_id,
    }


REPORT_KEY = ("account", "matched_by", "biz_id", "phone_number")  # unique keys (0005, 0006)


def _record_key(record: ports.ReportRecord) -> tuple[str, str, str, str]:
    r = record.report
    return (record.account, r.matched_by.value, r.biz_id, r.phone_number)


def _new_records(
    conn: Connection, records: Sequence[ports.ReportRecord], ids: list[int]
) -> list[ports.ReportRecord]:
    """The receipts of a batch that were stored now (not duplicates): all of them when every
    row was inserted (the usual case), else those whose key the new rows have, once each."""
    if len(ids) == len(records) or not ids:
        return list(records) if ids else []
    columns = [REPORT.c[k] for k in REPORT_KEY]
    stored = {tuple(r) for r in conn.execute(select(*columns).where(REPORT.c.id.in_(ids)))}
    new: dict[tuple[str, str, str, str], ports.ReportRecord] = {}
    for record in records:
        key = _record_key(record)
        if key in stored:
            new.setdefault(key, record)
    return list(new.values())


def observe_new_receipts(records: Sequence[ports.ReportRecord]) -> None:
    """``receiptd_delivery_seconds`` (how long handsets took: report_time - send_time) and
    ``receiptd_receipt_errors_total`` by code family, for receipts just committed. A metric
    never fails the write it describes."""
    try:
        delivery: dict[tuple[str, str], Any] = {}  # labels() takes a lock: once per batch
        for record in records:
            r = record.report
            labels = (r.provider.value, record.account)
            if r.report_time is not None:
                seconds = (r.report_time - r.send_time).total_seconds()
                child = delivery.get(labels)
                if child is None:
                    child = delivery[labels] = metrics.DELIVERY_SECONDS.labels(*labels)
                child.observe(max(seconds, 0.0))
            if not r.success:
                metrics.RECEIPT_ERRORS.labels(*labels, error_families.family(r.err_code)).inc()
    except Exception as exc:  # a defect in a label or a value: logged, the batch stands
        log.warning("metric_failed", metric="receiptd_delivery_seconds", error=repr(exc))


INBOUND_KEY = ("account", "phone_number", "sequence_id", "dest_code", "send_time")


def _by_account(
    records: Sequence[ports.ReportRecord],
) -> dict[tuple[domain.Provider, str], list[domain.SmsReport]]:
    """The receipts of a batch per (provider, account): each settles its own sends only."""
    groups: dict[tuple[domain.Provider, str], list[domain.SmsReport]] = {}
    for record in records:
        groups.setdefault((record.report.provider, record.account), []).append(record.report)
    return groups


def _mns_id(message_id: str, channel: domain.Channel) -> str | None:
    return message_id if channel is domain.Channel.MNS else None


def _inbound_row(record: ports.InboundRecord, now: datetime) -> dict[str, Any]:
    u = record.reply
    return {
        "account": record.account,
        "mns_message_id": _mns_id(record.message_id, record.channel),
        "phone_number": u.phone_number,
        "content": u.content,
        "send_time": u.send_time,
        "dest_code": u.dest_code,
        "sequence_id": u.sequence_id,
        "received_at": now,
        "channel": record.channel.value,
        "sign_name": u.sign_name,
    }


# Which open send a receipt settles: the one registered under its provider, account, biz_id
# and phone_number. A KooMessage receipt (AIM callback, HTTP push) arrives for a Huawei send
# registered as biz_id = task id, phone_number = cust_flag, whose out_id, when set, is the
# detail's msg_id and must match the receipt's too (the rule of providers/huawei/matching.py);
# an Aliyun send's out_id is the caller's own OutId and takes no part.
_MATCHES_MESSAGE_ID = frozenset({domain.Provider.HUAWEI})


def settle_from_reports(
    conn: Connection,
    reports: Sequence[domain.SmsReport],
    now: datetime,
    events: outbox.Outbox | None,
    provider: domain.Provider = domain.Provider.ALIYUN,
    *,
    account: str = domain.DEFAULT_ACCOUNT,
) -> int:
    """Settle the pending (or expired) sends of one account these receipts describe;
    delivered/failed never change (``domain.next_status``).

    One indexed SELECT finds which receipts have an open send (usually none: most receipts
    arrive for sends the compensator or an earlier receipt settled, or that were never
    registered) and locks those rows (``settle.lock_open``), so that exactly they are
    settled, counted and given their events by :func:`receiptd.db.settle.settle_sends`.
    """
    if not reports:
        return 0
    keys = sorted({(r.matched_by.value, r.biz_id, r.phone_number) for r in reports})
    # Locked, events or not: the rows settle_sends changes and counts (receiptd.db.counts).
    fixed = {"provider": provider.value, "account": account}
    locked = settle.lock_open(conn, _OPEN_BY_KEY, fixed, keys)
    by_key = {_key_of(row): (i, row["out_id"]) for i, row in locked.items()}
    match_message_id = provider in _MATCHES_MESSAGE_ID
    changes = []
    for r in reports:
        send_id, out_id = by_key.get((r.matched_by.value, r.biz_id, r.phone_number), (None, None))
        if send_id is None or (match_message_id and out_id not in (None, r.message_id)):
            continue
        changes.append(
            settle.SendChange(send_id, r.status, domain.SettledBy.RECEIPT, r.err_code, r.err_msg)
        )
    return settle.settle_sends(conn, changes, now, events, locked=locked)


def _key_of(row: Mapping[str, Any]) -> tuple[str, str, str]:
    """A send's matching key: which id, the id, the number (the unique key after account)."""
    return (row["matched_by"], row["biz_id"], row["phone_number"])


# The sends of a batch's receipts by their unique key (receiptd.db.lookup: bounded by every
# column whatever PostgreSQL's statistics say). Built once (``settle.OpenSends``); the values
# are bound per batch.
_OPEN_BY_KEY = settle.OpenSends(lookup.KeyLookup(SEND, SEND_SCOPE, SEND_KEYED))


# The name the Huawei path had before both providers shared one function.
settle_huawei_from_reports = functools.partial(settle_from_reports, provider=domain.Provider.HUAWEI)
