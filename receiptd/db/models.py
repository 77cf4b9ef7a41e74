"""The schema. Table and column names are a public contract: applications read them.

Timestamps are stored as UTC (naive columns on every backend, converted at the boundary by
:class:`UTCDateTime`); text is full Unicode (utf8mb4 with a binary collation on MariaDB so
identifiers compare exactly as on PostgreSQL and SQLite; NO PAD, so 'X' ≠ 'X ').
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

# Rows written before accounts existed (migration 0005) are the default account's.
from receiptd.domain import DEFAULT_ACCOUNT, SendKey

BIZ_ID = SendKey.BIZ_ID.value  # what every row written before migration 0006 is matched by

# The migration also sets a binary NO PAD collation (chosen per server: MariaDB or MySQL 8).
MYSQL_TABLE_ARGS = {"mysql_charset": "utf8mb4"}


def binary_collation(dialect: Dialect) -> str:
    """The binary NO PAD collation of every table on MariaDB / MySQL, so identifiers compare
    exactly as on PostgreSQL and SQLite (MariaDB's utf8mb4_bin is PAD SPACE: 'X' = 'X ')."""
    return "utf8mb4_nopad_bin" if getattr(dialect, "is_mariadb", False) else "utf8mb4_0900_bin"


NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; stored naive UTC with microseconds."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


ID = BigInteger().with_variant(Integer(), "sqlite")
BIG_TEXT = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
RAW_BYTES = LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# A send's unique key: the scope a batch of receipts shares (provider, account), then what
# each receipt names (which id, the id, the number).
SEND_SCOPE = ("provider", "account")
SEND_KEYED = ("matched_by", "biz_id", "phone_number")


class SmsSend(Base):
    """One recipient of one send: the row whose status receiptd keeps."""

    __tablename__ = "sms_send"
    __table_args__ = (
        # 0005: the same (biz_id, phone_number) in two accounts are two sends; 0006: so are a
        # BizId and a MessageId of the same text.
        UniqueConstraint(*SEND_SCOPE, *SEND_KEYED),
        Index(None, "status", "next_check_at"),
        # 0002, 0005: claim/peek walk one account's pending sends in sent_at order; the status
        # summary counts from it (index-only); prune finds settled sends by settled_at.
        Index(None, "status", "provider", "account", "sent_at"),
        Index(None, "settled_at"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(16))
    account: Mapped[str] = mapped_column(String(32), server_default=DEFAULT_ACCOUNT)
    # 0006: which provider id ``biz_id`` holds: a SendSms BizId, or a SendMessageToGlobe
    # MessageId (``matched_by = 'message_id'``; the number is then in international form).
    matched_by: Mapped[str] = mapped_column(String(16), server_default=BIZ_ID)
    biz_id: Mapped[str] = mapped_column(String(64))
    phone_number: Mapped[str] = mapped_column(String(32))
    out_id: Mapped[str | None] = mapped_column(String(128))
    task_id: Mapped[str | None] = mapped_column(String(255))  # 0006
    template_code: Mapped[str | None] = mapped_column(String(64))
    sign_name: Mapped[str | None] = mapped_column(String(64))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime())
    send_date: Mapped[date] = mapped_column(Date())
    status: Mapped[str] = mapped_column(String(16), default="pending")
    err_code: Mapped[str | None] = mapped_column(String(64))
    err_msg: Mapped[str | None] = mapped_column(String(512))
    settled_by: Mapped[str | None] = mapped_column(String(16))
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    check_count: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SmsSendCount(Base):
    """Sends per (provider, account, status, settled_by) as deltas (migration 0007): every
    write path of ``sms_send`` adds its changes here in its own transaction, and a periodic job
    squashes them (receiptd.db.counts). ``SUM(sends)`` per key is exact for what ``sms_send``
    holds; ``settled_by`` is ``''`` for pending sends."""

    __tablename__ = "sms_send_count"
    __table_args__ = (
        Index(None, "provider", "account", "status", "settled_by"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(16))
    account: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    settled_by: Mapped[str] = mapped_column(String(16))
    sends: Mapped[int] = mapped_column(BigInteger)


class SmsReportRow(Base):
    """One delivery receipt per recipient of a send, exactly as the provider reported it."""

    __tablename__ = "sms_report"
    __table_args__ = (
        UniqueConstraint("account", "matched_by", "biz_id", "phone_number"),  # 0005, 0006
        Index(None, "received_at"),  # 0002: retention
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    mns_message_id: Mapped[str | None] = mapped_column(String(64))
    account: Mapped[str] = mapped_column(String(32), server_default=DEFAULT_ACCOUNT)
    matched_by: Mapped[str] = mapped_column(String(16), server_default=BIZ_ID)  # 0006
    biz_id: Mapped[str] = mapped_column(String(64))
    phone_number: Mapped[str] = mapped_column(String(32))
    success: Mapped[bool] = mapped_column(Boolean())
    out_id: Mapped[str | None] = mapped_column(String(128))
    send_time: Mapped[datetime] = mapped_column(UTCDateTime())
    report_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    err_code: Mapped[str | None] = mapped_column(String(64))
    err_msg: Mapped[str | None] = mapped_column(String(512))
    sms_size: Mapped[int | None] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # HTTP push (migration 0003): the channel that delivered the row first, and the fields
    # only some channels carry.
    channel: Mapped[str | None] = mapped_column(String(16))
    provider: Mapped[str | None] = mapped_column(String(16))
    message_id: Mapped[str | None] = mapped_column(String(64))
    sign_name: Mapped[str | None] = mapped_column(String(64))
    template_code: Mapped[str | None] = mapped_column(String(64))
    # 0006: the body it came in (domain.ReportShape; NULL before 0006) and the echoed TaskId.
    shape: Mapped[str | None] = mapped_column(String(32))
    task_id: Mapped[str | None] = mapped_column(String(255))


class SmsInboundRow(Base):
    """One reply from a handset (SmsUp)."""

    __tablename__ = "sms_inbound"
    __table_args__ = (
        UniqueConstraint(  # 0005; named: the convention's name passes 64 characters
            "account",
            "phone_number",
            "sequence_id",
            "dest_code",
            "send_time",
            name="uq_sms_inbound_account_reply",
        ),
        Index(None, "received_at"),  # 0002: retention
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    mns_message_id: Mapped[str | None] = mapped_column(String(64))
    account: Mapped[str] = mapped_column(String(32), server_default=DEFAULT_ACCOUNT)
    phone_number: Mapped[str] = mapped_column(String(32))
    content: Mapped[str] = mapped_column(BIG_TEXT)
    send_time: Mapped[datetime] = mapped_column(UTCDateTime())
    dest_code: Mapped[str] = mapped_column(String(64))
    sequence_id: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    channel: Mapped[str | None] = mapped_column(String(16))  # mns | push (migration 0003)
    sign_name: Mapped[str | None] = mapped_column(String(64))


class DeadLetter(Base):
    """A queue message receiptd could not store, kept byte for byte with the reason."""

    __tablename__ = "dead_letter"
    __table_args__ = (
        UniqueConstraint("account", "queue", "mns_message_id"),  # 0005
        Index(None, "last_seen"),  # 0002: retention
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(32), server_default=DEFAULT_ACCOUNT)
    queue: Mapped[str] = mapped_column(String(128))
    mns_message_id: Mapped[str] = mapped_column(String(64))
    raw_body: Mapped[bytes] = mapped_column(RAW_BYTES)
    error: Mapped[str] = mapped_column(Text())
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    seen_count: Mapped[int] = mapped_column(Integer, default=1)
    replayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CompensatorRun(Base):
    """One compensation cycle of one replica, for ``receiptd status`` and operators."""

    __tablename__ = "compensator_run"
    __table_args__ = (Index(None, "started_at"), MYSQL_TABLE_ARGS)  # 0002: retention

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    replica: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claimed: Mapped[int] = mapped_column(Integer, default=0)
    calls: Mapped[int] = mapped_column(Integer, default=0)
    settled: Mapped[int] = mapped_column(Integer, default=0)
    expired: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)


class EventOutbox(Base):
    """One event (a send settled, a reply stored), written in the transaction that made it
    happen; ``id`` is the event's stable id (the ``webhook-id`` every delivery carries)."""

    __tablename__ = "event_outbox"
    __table_args__ = (Index(None, "created_at"), MYSQL_TABLE_ARGS)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    account: Mapped[str] = mapped_column(String(32), server_default=DEFAULT_ACCOUNT)
    send_id: Mapped[int | None] = mapped_column(ID)
    inbound_id: Mapped[int | None] = mapped_column(ID)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    payload: Mapped[str] = mapped_column(BIG_TEXT)  # the JSON body every delivery POSTs


class EventDelivery(Base):
    """One event's delivery to one webhook endpoint; each endpoint progresses on its own."""

    __tablename__ = "event_delivery"
    __table_args__ = (
        UniqueConstraint("event_id", "endpoint"),
        Index(None, "endpoint", "status", "next_attempt_at"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("event_outbox.id", ondelete="CASCADE")
    )
    endpoint: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|delivered|dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Due time while pending; a claim pushes it past the request's end (the claim's lease).
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    pending_since: Mapped[datetime] = mapped_column(UTCDateTime())  # retry period counts from
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(512))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


# Core tables for the store's bulk statements (typed as Table for mypy).
SEND = cast(Table, SmsSend.__table__)
SEND_COUNT = cast(Table, SmsSendCount.__table__)
REPORT = cast(Table, SmsReportRow.__table__)
INBOUND = cast(Table, SmsInboundRow.__table__)
DEAD = cast(Table, DeadLetter.__table__)
RUN = cast(Table, CompensatorRun.__table__)
EVENT = cast(Table, EventOutbox.__table__)
DELIVERY = cast(Table, EventDelivery.__table__)


def claim_released(now: Any) -> dict[str, Any]:
    """The ``sms_send`` columns every settle, backoff and expiry writes: the claim is given
    up and the row is touched (``now`` may be a bind parameter)."""
    return {"claimed_by": None, "claimed_until": None, "updated_at": now}
