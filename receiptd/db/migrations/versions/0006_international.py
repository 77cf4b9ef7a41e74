"""international: sends matched by MessageId, receipt shapes, TaskId

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

* ``matched_by`` (``biz_id`` on every existing row) on ``sms_send`` and ``sms_report``: which
  of the provider's ids the ``biz_id`` column holds, a SendSms ``BizId`` or a
  SendMessageToGlobe ``MessageId`` (docs/international.md). The unique keys include it after
  ``account``, so a BizId and a MessageId that happen to be equal are two sends.
* ``task_id`` on both (the international site's optional TaskId, echoed in its receipts) and
  ``shape`` on ``sms_report`` (``sms_report``, ``globe_sms_report``, ``intl_sms_report``,
  ``koomessage``; NULL on rows written before this revision: ``sms_report`` for Aliyun rows,
  ``koomessage`` for Huawei ones).

Columns with a constant default (or none) are added without rewriting the table on
PostgreSQL (11+), MariaDB (10.3+, instant ADD COLUMN) and SQLite; the two unique indexes are
rebuilt as in 0005 (docs/operations.md, "Upgrading to international sends").
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BIZ_ID = "biz_id"
MATCHED = ("sms_send", "sms_report")

# table → (old unique name, old columns), (new unique name, new columns)
UNIQUE = {
    "sms_send": (
        (
            "uq_sms_send_provider_account_biz_id_phone_number",
            ("provider", "account", "biz_id", "phone_number"),
        ),
        (
            "uq_sms_send_provider_account_matched_by_biz_id_phone_number",
            ("provider", "account", "matched_by", "biz_id", "phone_number"),
        ),
    ),
    "sms_report": (
        ("uq_sms_report_account_biz_id_phone_number", ("account", "biz_id", "phone_number")),
        (
            "uq_sms_report_account_matched_by_biz_id_phone_number",
            ("account", "matched_by", "biz_id", "phone_number"),
        ),
    ),
}


def upgrade() -> None:
    for table in MATCHED:
        op.add_column(
            table,
            sa.Column("matched_by", sa.String(length=16), nullable=False, server_default=BIZ_ID),
        )
        op.add_column(table, sa.Column("task_id", sa.String(length=255), nullable=True))
    op.add_column("sms_report", sa.Column("shape", sa.String(length=32), nullable=True))
    for table, (old, new) in UNIQUE.items():
        with op.batch_alter_table(table) as batch_op:
            batch_op.create_unique_constraint(new[0], list(new[1]))
            batch_op.drop_constraint(old[0], type_="unique")


def _refuse_message_id_rows() -> None:
    """Without ``matched_by`` a MessageId row would pass for a BizId one: a downgrade runs only
    while every row is matched by BizId."""
    bind = op.get_bind()
    for table in MATCHED:
        query = sa.text(f"SELECT count(*) FROM {table} WHERE matched_by <> :k")  # noqa: S608
        if bind.execute(query, {"k": BIZ_ID}).scalar_one():
            raise RuntimeError(f"{table} holds sends matched by MessageId")


def downgrade() -> None:
    _refuse_message_id_rows()
    for table, (old, new) in UNIQUE.items():
        with op.batch_alter_table(table) as batch_op:
            batch_op.create_unique_constraint(old[0], list(old[1]))
            batch_op.drop_constraint(new[0], type_="unique")
    with op.batch_alter_table("sms_report") as batch_op:
        batch_op.drop_column("shape")
    for table in reversed(MATCHED):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("task_id")
            batch_op.drop_column("matched_by")
