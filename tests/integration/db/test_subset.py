"""``id_in`` (receiptd.db.subset): "the first N matching rows" inside one UPDATE or DELETE, on
PostgreSQL and SQLite (MariaDB refuses LIMIT there: its callers read the ids first)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from receiptd.db import subset
from receiptd.db.models import DEAD

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def rows(n: int) -> list[dict[str, object]]:
    return [
        {"queue": "q", "mns_message_id": f"m{i}", "raw_body": b"x", "error": "e",
         "first_seen": NOW, "last_seen": NOW, "seen_count": 1}
        for i in range(n)
    ]  # fmt: skip


def test_delete_takes_exactly_the_rows_the_subquery_selects(engine: sa.Engine) -> None:
    if engine.dialect.name not in ("postgresql", "sqlite"):
        pytest.skip("MariaDB refuses LIMIT in such a subquery")
    with engine.begin() as conn:
        conn.execute(DEAD.insert(), rows(5))
        first = sa.select(DEAD.c.id).order_by(DEAD.c.mns_message_id).limit(2)
        deleted = conn.execute(DEAD.delete().where(subset.id_in(conn, DEAD.c.id, first)))
        assert deleted.rowcount == 2
        left = conn.execute(sa.select(DEAD.c.mns_message_id).order_by(DEAD.c.mns_message_id))
        assert list(left.scalars()) == ["m2", "m3", "m4"]


class _Conn:
    """What ``id_in`` reads of a connection: its dialect."""

    def __init__(self, dialect: sa.Dialect) -> None:
        self.dialect = dialect


@pytest.mark.parametrize(
    ("dialect", "shape"),
    [(postgresql.dialect(), "= any (array((select"), (sqlite.dialect(), "in (select")],
)
def test_postgresql_probes_the_primary_key_per_id(dialect: sa.Dialect, shape: str) -> None:
    ids = sa.select(DEAD.c.id).limit(3)
    clause = subset.id_in(_Conn(dialect), DEAD.c.id, ids)  # type: ignore[arg-type]
    assert shape in str(clause.compile(dialect=dialect)).lower()
