"""The cursor type and the three ways a query's result is read: first row, scalar, frame.

Every module in core/store reads results through these, so the one subtle rule lives here once:
all rows are fetched (a half-read result blocks the cursor for the next statement).
"""

from __future__ import annotations

from typing import Any

import duckdb
import pandas as pd

Cursor = duckdb.DuckDBPyConnection
"""A DuckDB connection or a cursor of one: one per thread, never shared across threads."""


def first(cur: Cursor, sql: str, params: Any = None) -> tuple[Any, ...] | None:
    """The first row; all rows are fetched (a half-read result blocks the cursor)."""
    rows = cur.execute(sql, params if params is not None else []).fetchall()
    return tuple(rows[0]) if rows else None


def scalar(cur: Cursor, sql: str, params: Any = None) -> Any:
    """The first column of the first row, or None when there is no row."""
    row = first(cur, sql, params)
    return row[0] if row else None


def frame(cur: Cursor, sql: str, params: Any = None) -> pd.DataFrame:
    return cur.execute(sql, params if params is not None else []).df()


def ident(name: str) -> str:
    """A double-quoted SQL identifier (only ever for names from the schema, never user text)."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A single-quoted SQL string literal, for the few statements that take no parameters (views)."""
    return "'" + text.replace("'", "''") + "'"
