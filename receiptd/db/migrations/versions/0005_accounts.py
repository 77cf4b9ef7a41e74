"""accounts: every send, receipt, reply, dead letter and event belongs to a provider account

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

* ``account`` (``default`` on every existing row) on ``sms_send``, ``sms_report``,
  ``sms_inbound``, ``dead_letter`` and ``event_outbox``. A column with a constant default is
  added without rewriting the table on PostgreSQL (11+), MariaDB (10.3+, instant ADD COLUMN)
  and SQLite.
* The unique keys include it, so the same ``(biz_id, phone_number)`` in two accounts are two
  sends (and two receipts); the claim index ``sms_send (status, provider, sent_at)`` becomes
  ``(status, provider, account, sent_at)``: the compensator claims per account.

Building the new unique indexes reads every row: on PostgreSQL under the table's ACCESS
EXCLUSIVE lock (reads and writes of that table wait), on MariaDB online (InnoDB builds a
secondary index in place with concurrent reads and writes), on SQLite by copying the table.
docs/operations.md ("Upgrading to accounts") gives the time measured at 10 M rows.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

DEFAULT_ACCOUNT = "default"
TABLES = ("sms_send", "sms_report", "sms_inbound", "dead_letter", "event_outbox")

# table → (old unique name, old columns), (new unique name, new columns)
UNIQUE = {
    "sms_send": (
        ("uq_sms_send_provider_biz_id_phone_number", ("provider", "biz_id", "phone_number")),
        (
            "uq_sms_send_provider_account_biz_id_phone_number",
            ("provider", "account", "biz_id", "phone_number"),
        ),
    ),
    "sms_report": (
        ("uq_sms_report_biz_id_phone_number", ("biz_id", "phone_number")),
        ("uq_sms_report_account_biz_id_phone_number", ("account", "biz_id", "phone_number")),
    ),
    "sms_inbound": (
        (
            "uq_sms_inbound_phone_number_sequence_id_dest_code_send_time",
            ("phone_number", "sequence_id", "dest_code", "send_time"),
        ),
        (
            "uq_sms_inbound_account_reply",
            ("account", "phone_number", "sequence_id", "dest_code", "send_time"),
        ),
    ),
    "dead_letter": (
        ("uq_dead_letter_queue_mns_message_id", ("queue", "mns_message_id")),
        ("uq_dead_letter_account_queue_mns_message_id", ("account", "queue", "mns_message_id")),
    ),
}
CLAIM_INDEX = (
    ("ix_sms_send_status_provider_sent_at", ("status", "provider", "sent_at")),
    ("ix_sms_send_status_provider_account_sent_at", ("status", "provider", "account", "sent_at")),
)


def upgrade() -> None:
    for table in TABLES:
        op.add_column(
            table,
            sa.Column(
                "account", sa.String(length=32), nullable=False, server_default=DEFAULT_ACCOUNT
            ),
        )
    for table, (old, new) in UNIQUE.items():
        with op.batch_alter_table(table) as batch_op:
            batch_op.create_unique_constraint(new[0], list(new[1]))
            batch_op.drop_constraint(old[0], type_="unique")
    (old_index, _), (new_index, columns) = CLAIM_INDEX
    op.create_index(new_index, "sms_send", list(columns))
    op.drop_index(old_index, table_name="sms_send")


def _refuse_other_accounts() -> None:
    """Rows of two accounts may share an old key, and without the column nothing would say
    whose a row is: a downgrade runs only while every row is the default account's."""
    bind = op.get_bind()
    for table in TABLES:
        query = sa.text(f"SELECT count(*) FROM {table} WHERE account <> :a")  # noqa: S608
        if bind.execute(query, {"a": DEFAULT_ACCOUNT}).scalar_one():
            raise RuntimeError(f"{table} holds rows of accounts other than {DEFAULT_ACCOUNT!r}")


def downgrade() -> None:
    (old_index, columns), (new_index, _) = CLAIM_INDEX
    op.create_index(old_index, "sms_send", list(columns))
    op.drop_index(new_index, table_name="sms_send")
    _refuse_other_accounts()
    for table, (old, new) in UNIQUE.items():
        with op.batch_alter_table(table) as batch_op:
            batch_op.create_unique_constraint(old[0], list(old[1]))
            batch_op.drop_constraint(new[0], type_="unique")
    for table in reversed(TABLES):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("account")
