"""Bulk upsert engine: one INSERT .. ON CONFLICT for many rows, the fast way on SQLite and PostgreSQL.

Telemetry ingest writes whole chunks through this (controller/telemetry/ingest.py); it knows tables
and columns only, nothing about telemetry.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, Integer, Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

Row = tuple[Any, ...]
_temp_tables = itertools.count()


def insert_for(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT (it has ON CONFLICT) for SQLite or PostgreSQL."""
    name = conn.dialect.name
    if name == "postgresql":
        return pg_insert(table)
    if name == "sqlite":
        return sqlite_insert(table)
    raise NotImplementedError(f"bulk upserts need SQLite or PostgreSQL, not {name}")


def _pg_type(column: Any) -> str:
    if isinstance(column.type, BigInteger | Integer):
        return "int8"
    if isinstance(column.type, Float):
        return "float8"
    return "text"


def bulk_upsert(
    conn: Connection,
    table: Table,
    cols: Sequence[str],
    rows: Iterable[Row],
    *,
    keys: list[str],
    add: list[str] | None = None,
    newer: str | None = None,
    returning: list[str] | None = None,
) -> list[Row]:
    """One INSERT .. ON CONFLICT for many rows (tuples in `cols` order), the fast way on each database.

    add: columns summed into an existing row; newer: replace the row only if this column grows;
    neither: DO NOTHING. Rows are applied in key order so that concurrent transactions lock shared
    rows in the same order and cannot deadlock.

    PostgreSQL: binary COPY into a temp table, then one INSERT .. SELECT .. ORDER BY .. ON CONFLICT.
    COPY's row encoding runs in C; parameter arrays are encoded element by element in Python and
    cost several times more client CPU. SQLite: a cached statement run by executemany
    (SQLAlchemy's insertmanyvalues when RETURNING is needed). Building a multi-VALUES statement per
    chunk instead costs more in SQL compilation than the database spends on the rows.
    """
    if conn.dialect.name == "postgresql":
        return _bulk_pg(conn, table, cols, rows, keys=keys, add=add, newer=newer, returning=returning)
    key_index = [list(cols).index(k) for k in keys]
    params = [dict(zip(cols, r, strict=True)) for r in sorted(rows, key=lambda r: [r[i] for i in key_index])]
    if not params:
        return []
    stmt = insert_for(conn, table)
    if add:
        stmt = stmt.on_conflict_do_update(
            index_elements=keys, set_={c: table.c[c] + stmt.excluded[c] for c in add}
        )
    elif newer:
        stmt = stmt.on_conflict_do_update(
            index_elements=keys,
            set_={c: stmt.excluded[c] for c in cols if c not in keys},
            where=table.c[newer] < stmt.excluded[newer],
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=keys)
    if returning:
        stmt = stmt.returning(*(table.c[c] for c in returning))
        return [tuple(row) for row in conn.execute(stmt, params)]
    conn.execute(stmt, params)
    return []


def _bulk_pg(
    conn: Connection,
    table: Table,
    cols: Sequence[str],
    rows: Iterable[Row],
    *,
    keys: list[str],
    add: list[str] | None,
    newer: str | None,
    returning: list[str] | None,
) -> list[Row]:
    q = conn.dialect.identifier_preparer.quote
    tname = q(table.name)
    temp = f"_bulk_{table.name}_{next(_temp_tables)}"
    types = [_pg_type(table.c[c]) for c in cols]
    collist = ", ".join(q(c) for c in cols)
    if add:
        action = "DO UPDATE SET " + ", ".join(f"{q(c)} = {tname}.{q(c)} + EXCLUDED.{q(c)}" for c in add)
    elif newer:
        action = "DO UPDATE SET " + ", ".join(f"{q(c)} = EXCLUDED.{q(c)}" for c in cols if c not in keys)
        action += f" WHERE {tname}.{q(newer)} < EXCLUDED.{q(newer)}"
    else:
        action = "DO NOTHING"
    keylist = ", ".join(q(k) for k in keys)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(
            f"CREATE TEMP TABLE {temp} ({', '.join(f'{q(c)} {t}' for c, t in zip(cols, types, strict=True))})"
            " ON COMMIT DROP"
        )
        with cursor.copy(f"COPY {temp} ({collist}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)
        sql = (f"INSERT INTO {tname} ({collist}) SELECT {collist} FROM {temp} ORDER BY {keylist} "
               f"ON CONFLICT ({keylist}) {action}")
        if returning:
            sql += " RETURNING " + ", ".join(q(c) for c in returning)
        cursor.execute(sql)
        out = [tuple(row) for row in cursor.fetchall()] if returning else []
        cursor.execute(f"DROP TABLE {temp}")
        return out
    finally:
        cursor.close()


ANALYZE_AFTER = 10_000  # rows one insert_rows call adds before PostgreSQL's statistics are refreshed


def _column_type(column: Any) -> str:
    """The PostgreSQL type of a table's column, as binary COPY into it must name it exactly."""
    if isinstance(column.type, BigInteger):
        return "int8"
    if isinstance(column.type, Integer):
        return "int4"
    if isinstance(column.type, Boolean):
        return "bool"
    return _pg_type(column)


def insert_rows(conn: Connection, table: Table, cols: Sequence[str], rows: Sequence[Row]) -> None:
    """Plain INSERT of many new rows, the fastest way each database takes them: binary COPY on
    PostgreSQL, the driver's executemany over tuples on SQLite (no per-row parameter dicts)."""
    if not rows:
        return
    q = conn.dialect.identifier_preparer.quote
    collist = ", ".join(q(c) for c in cols)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        if conn.dialect.name == "postgresql":
            with cursor.copy(f"COPY {q(table.name)} ({collist}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types([_column_type(table.c[c]) for c in cols])
                for row in rows:
                    copy.write_row(row)
            if len(rows) >= ANALYZE_AFTER:
                # Fresh statistics, or the planner still sizes the table as before and picks
                # sequential scans for the keyed reads and deletes that follow (seconds, not ms).
                cursor.execute(f"ANALYZE {q(table.name)}")
        elif conn.dialect.name == "sqlite":
            marks = ", ".join("?" for _ in cols)
            cursor.executemany(f"INSERT INTO {q(table.name)} ({collist}) VALUES ({marks})", rows)
        else:
            raise NotImplementedError(f"bulk inserts need SQLite or PostgreSQL, not {conn.dialect.name}")
    finally:
        cursor.close()
