"""Dialect-aware idempotent inserts: the one place that knows each backend's upsert syntax.

Statements are built once per (dialect, table, keys, columns) so SQLAlchemy compiles each
once. On PostgreSQL the rows travel as one JSON document (``INSERT ... SELECT FROM
json_to_recordset(:rows)``): a short, constant statement with one text parameter. The client
side is one ``json.dumps`` (C code) instead of per-element type processing and array dumping
(the previous ``unnest`` of one array per column cost about a third of the consumer's CPU per
receipt, docs/consumer.md), and a multi-row VALUES list of a 16-row batch (176 parameters)
would be re-parsed by psycopg on every execution. SQLite and MariaDB use SQLAlchemy's
"insertmanyvalues" (one multi-row INSERT per execution). Counts come from ``RETURNING``:
exact under concurrency, no extra round trip.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Connection,
    CursorResult,
    DateTime,
    Integer,
    String,
    Table,
    TextClause,
    text,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite

from receiptd import ports

# MariaDB answers a skipped duplicate with warning 1062; one per skipped row. Rows per
# statement are bounded so one statement (and one warning count) covers each chunk.
_CHUNK = 500


def insert_ignore(
    conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]], keys: Sequence[str]
) -> int:
    """Insert rows whose unique ``keys`` are new; existing rows stay untouched.

    Returns the number of rows inserted, counted from ``RETURNING`` (exact even when another
    transaction inserts the same keys concurrently).
    """
    return len(insert_ignore_ids(conn, table, rows, keys))


def insert_ignore_ids(
    conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]], keys: Sequence[str]
) -> list[int]:
    """:func:`insert_ignore` returning the ids of the rows inserted."""
    if not rows:
        return []
    if conn.dialect.name == "postgresql":
        stmt = _pg_json_insert(table, tuple(keys), tuple(rows[0]))
        document = json.dumps(rows, default=_json_values(), ensure_ascii=False)
        return list(conn.execute(stmt, {"rows": document}).scalars())
    stmt = _insert_ignore_stmt(conn.dialect.name, table, tuple(keys))
    inserted: list[int] = []
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        result = conn.execute(stmt, list(chunk))
        new = list(result.scalars())
        if conn.dialect.name in ("mysql", "mariadb"):
            _check_mysql_warnings(result, skipped=len(chunk) - len(new))
        inserted += new
    return inserted


@functools.cache
def _pg_json_insert(table: Table, keys: tuple[str, ...], columns: tuple[str, ...]) -> TextClause:
    """``INSERT INTO t (cols) SELECT cols FROM json_to_recordset(:rows) AS r(col type, ...)
    ON CONFLICT (keys) DO NOTHING RETURNING id``; duplicates inside one batch are skipped.

    Strings are read as ``text``: assigning it to a ``varchar(n)`` column raises "value too
    long" exactly as a plain INSERT would (an explicit cast would truncate silently).
    """
    record = ", ".join(f'"{c}" {_pg_record_type(table, c)}' for c in columns)
    names = ", ".join(f'"{c}"' for c in columns)
    conflict = ", ".join(f'"{k}"' for k in keys)
    # Identifiers come from the models; the values are one bound JSON text.
    return text(
        f'INSERT INTO "{table.name}" ({names}) SELECT {names} '  # noqa: S608
        f"FROM json_to_recordset(CAST(:rows AS json)) AS r({record}) "
        f'ON CONFLICT ({conflict}) DO NOTHING RETURNING "{table.c.id.name}"'
    )


def _pg_record_type(table: Table, column: str) -> str:
    kind = table.c[column].type
    if isinstance(kind, String):
        return "text"
    if isinstance(kind, Boolean):
        return "boolean"
    if isinstance(kind, Integer):
        return "bigint"
    if isinstance(getattr(kind, "impl", kind), DateTime):
        return "timestamp"  # UTCDateTime: naive UTC, as _json_value writes it
    return str(kind.compile(dialect=_PG))


_PG: Any = postgresql.dialect()  # type: ignore[no-untyped-call]


def _json_values() -> Callable[[Any], str]:
    """:func:`_json_value` once per distinct value of one document. The encoder calls back
    into Python for every datetime (three a receipt row), which cost as much as encoding the
    rest of the rows; every row of a batch carries the same ``received_at``, and receipts of
    one batch often share their times."""
    texts: dict[Any, str] = {}

    def default(value: Any) -> str:
        text = texts.get(value)
        if text is None:
            text = texts[value] = _json_value(value)
        return text

    return default


def _json_value(value: Any) -> str:
    """Datetimes as naive UTC ISO text (how UTCDateTime stores them), dates as ISO text."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        utc = value if value.tzinfo is UTC else value.astimezone(UTC)  # receipts': UTC already
        return utc.replace(tzinfo=None).isoformat(" ")
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in a JSON row")


@functools.cache
def _insert_ignore_stmt(dialect: str, table: Table, keys: tuple[str, ...]) -> Any:
    if dialect == "sqlite":
        stmt: Any = sqlite.insert(table).on_conflict_do_nothing(index_elements=list(keys))
    elif dialect in ("mysql", "mariadb"):
        # MariaDB's ON DUPLICATE KEY UPDATE ... RETURNING returns existing rows too, so only
        # INSERT IGNORE tells new rows apart. IGNORE would also turn data errors (truncation)
        # into warnings: _check_mysql_warnings turns those back into errors.
        stmt = mysql.insert(table).prefix_with("IGNORE")
    else:  # pragma: no cover - settings reject other backends
        raise NotImplementedError(dialect)
    return stmt.returning(table.c.id)


def _check_mysql_warnings(result: CursorResult[Any], skipped: int) -> None:
    """Raise StoreWriteError if INSERT IGNORE swallowed anything but skipped duplicates."""
    warnings = getattr(result.context.cursor, "warning_count", 0)
    if callable(warnings):  # mysqlclient has a method where PyMySQL has an attribute
        warnings = warnings()
    if int(warnings) > skipped:
        raise ports.StoreWriteError(
            f"INSERT IGNORE raised {int(warnings) - skipped} data warning(s) (e.g. truncation)"
        )


def upsert_count(
    conn: Connection,
    table: Table,
    row: Mapping[str, Any],
    keys: Sequence[str],
    counter: str,
    refresh: Sequence[str],
) -> bool:
    """Insert ``row`` (its ``counter`` at 1) or, if its keys exist, add one to ``counter`` and
    refresh some columns. Returns True when the row is new (one statement, exact)."""
    name = conn.dialect.name
    updates: dict[str, Any] = {col: row[col] for col in refresh}
    updates[counter] = table.c[counter] + 1
    if name in ("postgresql", "sqlite"):
        dialect_insert = postgresql.insert if name == "postgresql" else sqlite.insert
        stmt: Any = dialect_insert(table).on_conflict_do_update(
            index_elements=list(keys), set_=updates
        )
        # An update leaves the counter at 2 or more: 1 means this statement inserted it.
        return bool(conn.execute(stmt.returning(table.c[counter]), row).scalar_one() == 1)
    # MariaDB: affected rows are 1 for an insert, 2 for an update that changed the row (the
    # counter always changes), with or without CLIENT_FOUND_ROWS.
    result = conn.execute(mysql.insert(table).on_duplicate_key_update(**updates), row)
    return bool(result.rowcount == 1)
