"""All SQL of the workspace DuckDB (user state beside the atlas): named feature sets and saved steers.

Tables: feature_sets (set_id, name, created, note), set_members (set_id, sae_id, feature, added,
seq: the order members were added), saved_steers (settings and texts of a steering run, JSON
columns for the structured parts). Every function takes a cursor; the caller holds the lock.
Keys of features travel as a frame `keys (sae_id, feature, i)`, i their order.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import duckdb
import pandas as pd

from core.store.db import Cursor, first, frame, scalar

SET_SCHEMA: list[str] = [
    "CREATE SEQUENCE IF NOT EXISTS set_ids START 1",
    "CREATE SEQUENCE IF NOT EXISTS member_ids START 1",
    """CREATE TABLE IF NOT EXISTS feature_sets (
        set_id INTEGER PRIMARY KEY DEFAULT nextval('set_ids'), name VARCHAR NOT NULL,
        created TIMESTAMP, note VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS set_members (
        set_id INTEGER, sae_id VARCHAR, feature INTEGER, added TIMESTAMP,
        seq BIGINT DEFAULT nextval('member_ids'), PRIMARY KEY (set_id, sae_id, feature))""",
]

STEER_SCHEMA: list[str] = [
    "CREATE SEQUENCE IF NOT EXISTS steer_ids START 1",
    """CREATE TABLE IF NOT EXISTS saved_steers (
        steer_id INTEGER PRIMARY KEY DEFAULT nextval('steer_ids'), name VARCHAR NOT NULL,
        created TIMESTAMP, prompt VARCHAR, sampling JSON, interventions JSON,
        text_default VARCHAR, text_steered VARCHAR, measures JSON, url VARCHAR)""",
]


def create_tables(cur: Cursor, statements: list[str]) -> None:
    for stmt in statements:
        cur.execute(stmt)


@contextmanager
def transaction(cur: Cursor) -> Iterator[None]:
    """All statements inside commit together or not at all (an error or a kill rolls back)."""
    cur.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        cur.execute("ROLLBACK")
        raise
    cur.execute("COMMIT")


@contextmanager
def _registered(cur: Cursor, keys: pd.DataFrame) -> Iterator[None]:
    cur.register("_keys", keys)
    try:
        yield
    except BaseException:
        try:  # an aborted transaction refuses even this; the first error is the one to see
            cur.unregister("_keys")
        except duckdb.Error:
            pass
        raise
    cur.unregister("_keys")


# ---- feature sets ------------------------------------------------------------------------------


def list_sets(cur: Cursor) -> list[tuple[Any, ...]]:
    """(set_id, name, size, created) of every set, by name (case-insensitive first)."""
    return cur.execute(
        "SELECT s.set_id, s.name, count(m.feature), s.created FROM feature_sets s "
        "LEFT JOIN set_members m USING (set_id) GROUP BY s.set_id, s.name, s.created "
        "ORDER BY lower(s.name), s.name, s.set_id"
    ).fetchall()


def find_set(cur: Cursor, name: str) -> int | None:
    set_id = scalar(cur, "SELECT set_id FROM feature_sets WHERE name = ?", [name])
    return None if set_id is None else int(set_id)


def set_exists(cur: Cursor, set_id: int) -> bool:
    return first(cur, "SELECT 1 FROM feature_sets WHERE set_id = ?", [int(set_id)]) is not None


def create_set(cur: Cursor, name: str, keys: pd.DataFrame, now: datetime) -> int:
    """A new set with its first members, in one transaction: never a set left half-made."""
    with transaction(cur):
        set_id = int(
            scalar(
                cur,
                "INSERT INTO feature_sets (name, created) VALUES (?, ?) RETURNING set_id",
                [name, now],
            )
        )
        if len(keys):
            insert_members(cur, set_id, keys, now)
    return set_id


def rename_set(cur: Cursor, set_id: int, name: str) -> None:
    cur.execute("UPDATE feature_sets SET name = ? WHERE set_id = ?", [name, set_id])


def delete_set(cur: Cursor, set_id: int) -> None:
    with transaction(cur):
        cur.execute("DELETE FROM set_members WHERE set_id = ?", [set_id])
        cur.execute("DELETE FROM feature_sets WHERE set_id = ?", [set_id])


def count_members(cur: Cursor, set_id: int) -> int:
    return int(scalar(cur, "SELECT count(*) FROM set_members WHERE set_id = ?", [set_id]) or 0)


def insert_members(cur: Cursor, set_id: int, keys: pd.DataFrame, now: datetime) -> None:
    """Add the keys not yet in the set, in the keys' order (`seq` keeps it)."""
    with _registered(cur, keys):
        cur.execute(
            "INSERT INTO set_members (set_id, sae_id, feature, added) "
            "SELECT ?, k.sae_id, k.feature, ? FROM _keys k "
            "ANTI JOIN (SELECT * FROM set_members WHERE set_id = ?) m "
            "ON m.sae_id = k.sae_id AND m.feature = k.feature ORDER BY k.i",
            [set_id, now, set_id],
        )


def delete_members(cur: Cursor, set_id: int, keys: pd.DataFrame) -> None:
    with _registered(cur, keys):
        cur.execute(
            "DELETE FROM set_members m USING _keys k WHERE m.set_id = ? "
            "AND m.sae_id = k.sae_id AND m.feature = k.feature",
            [set_id],
        )


def members(cur: Cursor, set_id: int) -> list[tuple[Any, ...]]:
    """(sae_id, feature) in the order they were added."""
    return cur.execute(
        "SELECT sae_id, feature FROM set_members WHERE set_id = ? ORDER BY seq", [set_id]
    ).fetchall()


def sets_containing(cur: Cursor, sae_id: str, feature: int) -> list[str]:
    rows = cur.execute(
        "SELECT s.name FROM feature_sets s JOIN set_members m USING (set_id) "
        "WHERE m.sae_id = ? AND m.feature = ? ORDER BY s.name",
        [sae_id, int(feature)],
    ).fetchall()
    return [str(r[0]) for r in rows]


# ---- saved steers ------------------------------------------------------------------------------

_STEER_COLUMNS = (
    "name, created, prompt, sampling, interventions, text_default, text_steered, measures, url"
)


def insert_steer(cur: Cursor, row: list[Any]) -> int:
    """`row` holds the values of _STEER_COLUMNS in order (JSON columns as text); returns the id."""
    return int(
        scalar(
            cur,
            f"INSERT INTO saved_steers ({_STEER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "RETURNING steer_id",
            row,
        )
    )


def list_steers(cur: Cursor) -> pd.DataFrame:
    """steer_id, name, created, prompt, url — newest first."""
    return frame(
        cur, "SELECT steer_id, name, created, prompt, url FROM saved_steers ORDER BY created DESC"
    )


def steer_row(cur: Cursor, steer_id: int) -> tuple[Any, ...] | None:
    """(name, prompt, sampling, interventions, text_default, text_steered, measures, url,
    created) of one saved steer, or None."""
    return first(
        cur,
        "SELECT name, prompt, sampling, interventions, text_default, text_steered, measures, "
        "url, created FROM saved_steers WHERE steer_id = ?",
        [int(steer_id)],
    )


def delete_steer(cur: Cursor, steer_id: int) -> None:
    cur.execute("DELETE FROM saved_steers WHERE steer_id = ?", [int(steer_id)])
