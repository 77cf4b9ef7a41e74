""" "The first N matching rows" inside one UPDATE/DELETE: one round trip, driven by indexes.

Claims (``UPDATE … RETURNING``) and prune batches (``DELETE``) pick their rows with a
``SELECT id … LIMIT n`` subquery. Written as ``id IN (SELECT …)``, PostgreSQL plans a hash
semi-join of the subquery's ids against a sequential scan of the whole table (docs/scale.md);
``id = ANY(ARRAY(SELECT …))`` makes it probe the primary key per id. SQLite uses the index
either way. MariaDB refuses ``LIMIT`` in such a subquery: its callers read the ids first.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, any_, func


def id_in(conn: Connection, column: Any, ids: Select[Any]) -> ColumnElement[bool]:
    """``column`` is one of the ids ``ids`` selects (PostgreSQL and SQLite only)."""
    if conn.dialect.name == "postgresql":
        return column == any_(func.array(ids.scalar_subquery()))  # type: ignore[no-any-return]
    return column.in_(ids.scalar_subquery())  # type: ignore[no-any-return]
