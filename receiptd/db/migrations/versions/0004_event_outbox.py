"""event outbox: events and their per-endpoint webhook deliveries

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _binary_collation() -> str:
    """The same binary NO PAD collation as revision 0001 (exact identifier comparison)."""
    dialect = op.get_bind().dialect
    if getattr(dialect, "is_mariadb", False):
        return "utf8mb4_nopad_bin"
    return "utf8mb4_0900_bin"  # MySQL 8


revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_outbox",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("send_id", ID, nullable=True),
        sa.Column("inbound_id", ID, nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column(
            "payload",
            sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_outbox")),
        mysql_charset="utf8mb4",
        mysql_collate=_binary_collation(),
    )
    op.create_index(op.f("ix_event_outbox_created_at"), "event_outbox", ["created_at"])
    op.create_table(
        "event_delivery",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("endpoint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTC_DATETIME, nullable=False),
        sa.Column("pending_since", UTC_DATETIME, nullable=False),
        sa.Column("last_attempt_at", UTC_DATETIME, nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=512), nullable=True),
        sa.Column("delivered_at", UTC_DATETIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["event_outbox.id"],
            name=op.f("fk_event_delivery_event_id_event_outbox"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_delivery")),
        sa.UniqueConstraint(
            "event_id", "endpoint", name=op.f("uq_event_delivery_event_id_endpoint")
        ),
        mysql_charset="utf8mb4",
        mysql_collate=_binary_collation(),
    )
    op.create_index(
        op.f("ix_event_delivery_endpoint_status_next_attempt_at"),
        "event_delivery",
        ["endpoint", "status", "next_attempt_at"],
    )


def downgrade() -> None:
    op.drop_table("event_delivery")
    op.drop_table("event_outbox")
