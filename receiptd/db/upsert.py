"""Dialect-aware idempotent inserts: the one place that knows each backend's upsert syntax."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Table, func, select, tuple_
from sqlalchemy.dialects import mysql, postgresql, sqlite


def insert_ignore(
    conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]], keys: Sequence[str]
) -> int:
    """Insert rows whose unique ``keys`` are new; existing rows stay untouched.

    Returns the number of rows inserted. MariaDB's ``INSERT IGNORE`` would also swallow data
    errors (silent truncation), so it uses a no-op ``ON DUPLICATE KEY UPDATE`` instead.
    """
    if not rows:
        return 0
    name = conn.dialect.name
    if name in ("mysql", "mariadb"):
        # rowcount counts found duplicates too (CLIENT_FOUND_ROWS), so count them first.
        key_cols = tuple_(*(table.c[k] for k in keys))
        wanted = {tuple(row[k] for k in keys) for row in rows}
        existing = conn.execute(select(*(table.c[k] for k in keys)).where(key_cols.in_(wanted)))
        stmt: Any = mysql.insert(table).values(list(rows)).on_duplicate_key_update(id=table.c.id)
        conn.execute(stmt)
        return len(wanted - {tuple(r) for r in existing})
    if name == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing(index_elements=list(keys))
    elif name == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=list(keys))
    else:  # pragma: no cover - settings reject other backends
        raise NotImplementedError(name)
    return len(conn.execute(stmt.values(list(rows)).returning(table.c.id)).all())


def upsert_count(
    conn: Connection,
    table: Table,
    row: Mapping[str, Any],
    keys: Sequence[str],
    counter: str,
    refresh: Sequence[str],
) -> bool:
    """Insert ``row`` or, if its keys exist, add one to ``counter`` and refresh some columns.

    Returns True when the row is new.
    """
    name = conn.dialect.name
    updates: dict[str, Any] = {col: row[col] for col in refresh}
    updates[counter] = table.c[counter] + 1
    if name in ("postgresql", "sqlite"):
        dialect_insert = postgresql.insert if name == "postgresql" else sqlite.insert
        stmt: Any = dialect_insert(table).on_conflict_do_update(
            index_elements=list(keys), set_=updates
        )
        exists = conn.execute(
            table.select()
            .with_only_columns(func.count())
            .where(*(table.c[k] == row[k] for k in keys))
        ).scalar_one()
        conn.execute(stmt, row)
        return exists == 0
    stmt = mysql.insert(table).on_duplicate_key_update(**updates)
    result = conn.execute(stmt, row)
    return result.rowcount == 1
