"""indexes for the hot queries at scale and for retention by time

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

* ``sms_send (status, provider, sent_at)``: claim and peek read one provider's pending sends
  oldest first and stop after a batch; the status summary counts from it (index-only scan on
  PostgreSQL) and finds the oldest pending send per provider without touching the table.
* one index on each table's retention time column, so a prune batch finds its rows by range.
* PostgreSQL: ``sms_send`` pages keep 20 % free (``fillfactor = 80``) so that claiming a send
  (``claimed_by``, ``claimed_until``: not indexed) is a HOT update that writes no index entry;
  a claim of 5,000 sends otherwise writes 30,000 index entries (docs/scale.md).

See docs/scale.md for the EXPLAIN of each query.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

INDEXES = (
    ("sms_send", ("status", "provider", "sent_at")),
    ("sms_send", ("settled_at",)),
    ("sms_report", ("received_at",)),
    ("sms_inbound", ("received_at",)),
    ("dead_letter", ("last_seen",)),
    ("compensator_run", ("started_at",)),
)


def _name(table: str, columns: tuple[str, ...]) -> str:
    return f"ix_{table}_{'_'.join(columns)}"  # the models' naming convention


def upgrade() -> None:
    for table, columns in INDEXES:
        op.create_index(_name(table, columns), table, list(columns))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE sms_send SET (fillfactor = 80)")  # new pages; old ones as is


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE sms_send RESET (fillfactor)")
    for table, columns in reversed(INDEXES):
        op.drop_index(_name(table, columns), table_name=table)
