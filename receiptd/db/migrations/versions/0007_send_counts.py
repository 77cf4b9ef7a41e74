"""send counts: sms_send_count, the status summary at any size

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

``sms_send_count`` holds sends per (provider, account, status, settled_by) as deltas that every
write path adds in its own transaction (receiptd.db.counts); it starts with one row per key,
counted from ``sms_send`` here. The count reads every ``sms_send`` row once. Writers of an older
receiptd would not add their deltas: upgrade with receiptd stopped (docs/operations.md,
"Upgrading to send counts"); on PostgreSQL the table is locked against writes (SHARE) while it
is counted, so a writer that is still running waits instead of being missed.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from receiptd.db.models import binary_collation

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    id_type = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "sms_send_count",
        sa.Column("id", id_type, primary_key=True, autoincrement=True),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("account", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("settled_by", sa.String(16), nullable=False),
        sa.Column("sends", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sms_send_count"),
        mysql_charset="utf8mb4",
        mysql_collate=binary_collation(bind.dialect),
    )
    op.create_index(
        "ix_sms_send_count_provider_account_status_settled_by",
        "sms_send_count",
        ["provider", "account", "status", "settled_by"],
    )
    if bind.dialect.name == "postgresql":
        op.execute("LOCK TABLE sms_send IN SHARE MODE")
    op.execute(
        "INSERT INTO sms_send_count (provider, account, status, settled_by, sends) "
        "SELECT provider, account, status, COALESCE(settled_by, ''), count(*) FROM sms_send "
        "GROUP BY provider, account, status, COALESCE(settled_by, '')"
    )


def downgrade() -> None:
    op.drop_table("sms_send_count")  # its index with it
