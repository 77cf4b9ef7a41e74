"""push channel: where each receipt came from, and the fields only pushes carry

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_REPORT_COLUMNS = (
    ("channel", 16),  # mns | push (the channel that delivered it first)
    ("provider", 16),  # aliyun | huawei (NULL on rows written before 0003: aliyun)
    ("message_id", 64),  # the provider's own message id (push only)
    ("sign_name", 64),
    ("template_code", 64),
)
_INBOUND_COLUMNS = (("channel", 16), ("sign_name", 64))


def upgrade() -> None:
    for name, length in _REPORT_COLUMNS:
        op.add_column("sms_report", sa.Column(name, sa.String(length=length), nullable=True))
    for name, length in _INBOUND_COLUMNS:
        op.add_column("sms_inbound", sa.Column(name, sa.String(length=length), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sms_inbound") as batch_op:
        for name, _ in reversed(_INBOUND_COLUMNS):
            batch_op.drop_column(name)
    with op.batch_alter_table("sms_report") as batch_op:
        for name, _ in reversed(_REPORT_COLUMNS):
            batch_op.drop_column(name)
