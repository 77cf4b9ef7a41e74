"""Rows by exact values of a unique key, in a read that stays bounded whatever the statistics say.

A batch looks up its rows by a unique key whose leading columns are fixed for the batch (the
provider, the account) and whose trailing columns take one value per item (which id, the id,
the number). Written as IN lists (``account = :a AND matched_by IN (…) AND biz_id IN (…)``),
PostgreSQL's planner may run it two ways (``get_index_paths`` in its ``indxpath.c``): bounded
by every column, or bounded by the leading columns alone with the lists as a filter. When the
statistics put few rows under the fixed values it takes the second, and reads every row of
the account for each batch: a table never analyzed (autovacuum off, or a bulk load minutes
ago), or an account that started after the last ANALYZE (a new account is below every
statistic until 10 % of the table changes). Measured (docs/scale.md, "Issue 26: lookups by
key"): 14.5 ms a batch of 16 at 18,000 sends never analysed, 7.9 ms at 30,000 sends of a new
account, against 0.1 to 0.3 ms bounded by every column.

On PostgreSQL the keys therefore travel as one JSON document of rows and each is looked up
on its own (``json_to_recordset`` joined ``LATERAL`` to a subquery that ``OFFSET 0`` keeps
from being flattened): every key column is an equality in that subquery, so the index is
bounded by all of them whatever the statistics say. The ids found are then read by primary
key (``id = ANY(ARRAY(…))``), whose estimate PostgreSQL takes from the key's uniqueness, not
from statistics. SQLite's planner prefers the index that bounds the most columns and
MariaDB estimates IN lists by index dives (``eq_range_index_dive_limit``), so there the IN
lists stay: a superset when two columns vary (every combination), which callers narrow to
their exact keys.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Connection,
    Select,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    column,
    func,
    select,
    true,
)


class KeyLookup:
    """The rows of ``table`` with ``fixed`` columns equal to bound values (``params``'
    ``fixed``) and ``keyed`` columns equal to one of the given key tuples. Statements are
    built once, per dialect; the values are bound per call."""

    def __init__(self, table: Table, fixed: Sequence[str], keyed: Sequence[str]) -> None:
        self.table, self.fixed, self.keyed = table, tuple(fixed), tuple(keyed)
        self.exact = self._exact_rows()
        self.lists = table.select().where(self.lists_condition())

    def rows(self, conn: Connection) -> Select[Any]:
        """``SELECT`` every column of the matching rows, for :meth:`params` of ``conn``."""
        return self.rows_for(conn.dialect.name)

    def rows_for(self, dialect: str) -> Select[Any]:
        """:meth:`rows` on ``dialect``: :attr:`exact` on PostgreSQL, :attr:`lists` (a superset
        of the keys) elsewhere."""
        return self.exact if dialect == "postgresql" else self.lists

    def lists_condition(self) -> ColumnElement[bool]:
        """The IN-list form's condition (every combination of the keyed columns' values)."""
        table = self.table
        return and_(
            *(table.c[c] == bindparam(c) for c in self.fixed),
            *(table.c[c].in_(bindparam(f"{c}_values", expanding=True)) for c in self.keyed),
        )

    def params(
        self, conn: Connection, fixed: Mapping[str, Any], keys: Iterable[tuple[str, ...]]
    ) -> dict[str, Any]:
        """Bind values for ``conn``'s statement: ``fixed`` by column, ``keys`` as tuples in
        ``keyed``'s order."""
        params = dict(fixed)
        if conn.dialect.name == "postgresql":
            rows = [dict(zip(self.keyed, key, strict=True)) for key in keys]
            params["keys"] = json.dumps(rows, ensure_ascii=False)
            return params
        columns = list(zip(*keys, strict=True)) or [() for _ in self.keyed]
        for name, values in zip(self.keyed, columns, strict=True):
            params[f"{name}_values"] = sorted(set(values))
        return params

    def _exact_rows(self) -> Select[Any]:
        table, inner = self.table, self.table.alias("keyed")
        keys = (
            func.json_to_recordset(cast(bindparam("keys", type_=Text), JSON))
            .table_valued(*(column(c, Text) for c in self.keyed))
            .render_derived(name="k", with_types=True)
        )
        match = (
            select(inner.c.id)
            .where(
                *(inner.c[c] == bindparam(c) for c in self.fixed),
                *(inner.c[c] == keys.c[c] for c in self.keyed),
            )
            .offset(0)  # a fence: the subquery is planned per key, never flattened
            .lateral("m")
        )
        ids = select(match.c.id).select_from(keys).join(match, true())
        return table.select().where(table.c.id == any_(func.array(ids.scalar_subquery())))
