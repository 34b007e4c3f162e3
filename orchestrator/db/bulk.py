"""Batched writes straight to the DB-API ``executemany``, for the coordinator's hot path.

SQLAlchemy's executemany compiles parameters row by row in Python; for a 10,000-job attempt that is
most of the coordinator's CPU, taken from the threads running jobs (one GIL). These helpers build
the statement once and hand the driver plain tuples, still converting every value with the column
type's own bind processor, so what is stored is exactly what SQLAlchemy would store.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import JSON, Connection, Table


def _marker(conn: Connection) -> str:
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def _processors(conn: Connection, table: Table, columns: Sequence[str]) -> list:
    # JSON is serialized here for every driver: psycopg's own JSON adaptation is SQLAlchemy's (through
    # bind casts), which a raw executemany bypasses; a JSON text literal works everywhere.
    return [
        json.dumps
        if isinstance(table.c[name].type, JSON)
        else table.c[name].type.bind_processor(conn.dialect)
        for name in columns
    ]


def _row(values: Iterable[Any], processors: list) -> tuple:
    return tuple(v if p is None or v is None else p(v) for v, p in zip(values, processors, strict=True))


def update_many(
    conn: Connection,
    table: Table,
    fixed: Mapping[str, Any],
    key: str,
    columns: Sequence[str],
    rows: Iterable[tuple[Any, Sequence[Any]]],
) -> None:
    """``UPDATE table SET columns... WHERE fixed... AND key = ?`` for each ``(key value, values)``."""
    m = _marker(conn)
    where = [*fixed, key]
    sql = (
        f"UPDATE {table.name} SET {', '.join(f'{c} = {m}' for c in columns)} "
        f"WHERE {' AND '.join(f'{c} = {m}' for c in where)}"
    )
    procs = _processors(conn, table, [*columns, *where])
    fixed_values = list(fixed.values())
    params = [_row([*values, *fixed_values, key_value], procs) for key_value, values in rows]
    if params:
        conn.exec_driver_sql(sql, params)


def insert_many(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]], suffix: str = "") -> None:
    """``INSERT`` of rows that all have the same keys."""
    if not rows:
        return
    columns = list(rows[0])
    m = _marker(conn)
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join([m] * len(columns))}){suffix}"
    procs = _processors(conn, table, columns)
    conn.exec_driver_sql(sql, [_row((r[c] for c in columns), procs) for r in rows])


def insert_many_ignoring_duplicates(
    conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]
) -> None:
    """``INSERT ... ON CONFLICT DO NOTHING`` (SQLite and PostgreSQL): replaying events is harmless."""
    insert_many(conn, table, rows, " ON CONFLICT DO NOTHING")
