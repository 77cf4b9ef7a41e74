"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

# Naive UTC timestamps with microseconds (receiptd.db.models.UTCDateTime converts at the edge).
UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _binary_collation() -> str:
    """A binary NO PAD collation, so identifiers compare exactly as on PostgreSQL and SQLite:
    MariaDB's and MySQL 5.7's utf8mb4_bin are PAD SPACE ('X' = 'X ' in unique keys)."""
    dialect = op.get_bind().dialect
    if getattr(dialect, "is_mariadb", False):
        return "utf8mb4_nopad_bin"
    return "utf8mb4_0900_bin"  # MySQL 8


revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "compensator_run",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("replica", sa.String(length=64), nullable=False),
        sa.Column("started_at", UTC_DATETIME, nullable=False),
        sa.Column("finished_at", UTC_DATETIME, nullable=True),
        sa.Column("claimed", sa.Integer(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("settled", sa.Integer(), nullable=False),
        sa.Column("expired", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compensator_run")),
        mysql_charset="utf8mb4",
        mysql_collate=_binary_collation(),
    )
    op.create_table(
        "dead_letter",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("queue", sa.String(length=128), nullable=False),
        sa.Column("mns_message_id", sa.String(length=64), nullable=False),
        sa.Column(
            "raw_body",
            sa.LargeBinary()
            .with_variant(mysql.MEDIUMBLOB(), "mariadb")
            .with_variant(mysql.MEDIUMBLOB(), "mysql"),
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("first_seen", UTC_DATETIME, nullable=False),
        sa.Column("last_seen", UTC_DATETIME, nullable=False),
        sa.Column("seen_count", sa.Integer(), nullable=False),
        sa.Column("replayed_at", UTC_DATETIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letter")),
        sa.UniqueConstraint(
            "queue", "mns_message_id", name=op.f("uq_dead_letter_queue_mns_message_id")
        ),
        mysql_charset="utf8mb4",
        mysql_collate=_binary_collation(),
    )
    op.create_table(
        "sms_inbound",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("mns_message_id", sa.String(length=64), nullable=True),
        sa.Column("phone_number", sa.String(length=32), nullable=False),
        sa.Column(
            "content",
            sa.Text()
            .with_variant(mysql.MEDIUMTEXT(), "mariadb")
            .with_variant(mysql.MEDIUMTEXT(), "mysql"),
            nullable=False,
        ),
        sa.Column("send_time", UTC_DATETIME, nullable=False),
        sa.Column("dest_code", sa.String(length=64), nullable=False),
        sa.Column("sequence_id", sa.String(length=64), nullable=False),
        sa.Column("received_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_inbound")),
        sa.UniqueConstraint(
            "phone_number",
            "sequence_id",
            "dest_code",
            "send_time",
            name=op.f("uq_sms_inbound_phone_number_sequence_id_dest_code_send_time"),
        ),
        mysql_charset="utf8mb4",
        mysql_collate=_binary_collation(),
    )
    op.create_table(
        "sms_report",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("mns_message_id", sa.String(length=64), nullable=True),
        sa.Column("biz_id", sa.String(length=64), nullable=False),
        sa.Column("phone_number", sa.String(length=32), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("out_id", sa.String(length=128), nullable=True),
        sa.Column("send_time", UTC_DATETIME, nullable=False),
        sa.Column("report_time", UTC_DATETIME, nullable=True),
        sa.Column("err_code", sa.String(length=64), nullable=True),
        sa.Column("err_msg", sa.String(length=512), nullable=True),
        sa.Column("sms_size", sa.Integer(), nullable=True),
        sa.Column("received_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_report")),
        sa.UniqueConstraint(
            "biz_id", "phone_number", name=op.f("uq_sms_report_biz_id_phone_number")
        ),
        mysql_charset="utf8mb4",
        mysql_collate=_binary_collation(),
    )
    op.create_table(
        "sms_send",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("biz_id", sa.String(length=64), nullable=False),
        sa.Column("phone_number", sa.String(length=32), nullable=False),
        sa.Column("out_id", sa.String(length=128), nullable=True),
        sa.Column("template_code", sa.String(length=64), nullable=True),
        sa.Column("sign_name", sa.String(length=64), nullable=True),
        sa.Column("sent_at", UTC_DATETIME, nullable=False),
        sa.Column("send_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("err_code", sa.String(length=64), nullable=True),
        sa.Column("err_msg", sa.String(length=512), nullable=True),
        sa.Column("settled_by", sa.String(length=16), nullable=True),
        sa.Column("settled_at", UTC_DATETIME, nullable=True),
        sa.Column("next_check_at", UTC_DATETIME, nullable=True),
        sa.Column("check_count", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_until", UTC_DATETIME, nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_send")),
        sa.UniqueConstraint(
            "provider",
            "biz_id",
            "phone_number",
            name=op.f("uq_sms_send_provider_biz_id_phone_number"),
        ),
        mysql_charset="utf8mb4",
        mysql_collate=_binary_collation(),
    )
    with op.batch_alter_table("sms_send", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sms_send_status_next_check_at"),
            ["status", "next_check_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("sms_send", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sms_send_status_next_check_at"))

    op.drop_table("sms_send")
    op.drop_table("sms_report")
    op.drop_table("sms_inbound")
    op.drop_table("dead_letter")
    op.drop_table("compensator_run")
