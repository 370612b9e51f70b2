"""The writable workspace: user state (named feature sets) in a small DuckDB beside the atlas.

The atlas stays immutable and read-only; everything a user creates lives here. One
`Workspace` is shared by all app sessions, so every call takes the lock and its own cursor.
Later features add their tables to `SCHEMA` (e.g. saved steers) and their methods here or in
a module that uses `Workspace.cursor()`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

SCHEMA: list[str] = [
    "CREATE SEQUENCE IF NOT EXISTS set_ids START 1",
    "CREATE SEQUENCE IF NOT EXISTS member_ids START 1",
    """CREATE TABLE IF NOT EXISTS feature_sets (
        set_id INTEGER PRIMARY KEY DEFAULT nextval('set_ids'), name VARCHAR NOT NULL,
        created TIMESTAMP, note VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS set_members (
        set_id INTEGER, sae_id VARCHAR, feature INTEGER, added TIMESTAMP,
        seq BIGINT DEFAULT nextval('member_ids'), PRIMARY KEY (set_id, sae_id, feature))""",
]

MAX_NAME = 200


class WorkspaceError(ValueError):
    """A request the workspace refuses: empty or duplicate name, unknown set."""


def default_workspace_path(atlas_path: Path | None = None) -> Path:
    """SAE_ATLAS_WORKSPACE, else workspace.duckdb beside the atlas (else under data/)."""
    env = os.environ.get("SAE_ATLAS_WORKSPACE")
    if env:
        return Path(env)
    if atlas_path is not None:
        return Path(atlas_path).parent / "workspace.duckdb"
    from core.paths import REPO_ROOT

    return REPO_ROOT / "data" / "workspace.duckdb"


@dataclass(frozen=True)
class FeatureSet:
    set_id: int
    name: str
    size: int
    created: datetime | None


class Workspace:
    """Feature sets: create, rename, delete, add / remove features, list."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = duckdb.connect(str(self.path))
        self._lock = threading.Lock()
        with self.cursor() as cur:
            for stmt in SCHEMA:
                cur.execute(stmt)

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor held under the workspace lock (one writer at a time)."""
        with self._lock:
            cur = self._con.cursor()
            try:
                yield cur
            finally:
                cur.close()

    def close(self) -> None:
        with self._lock:
            self._con.close()

    # ---- sets ----
    def list_sets(self) -> list[FeatureSet]:
        with self.cursor() as cur:
            rows = cur.execute(
                "SELECT s.set_id, s.name, count(m.feature), s.created FROM feature_sets s "
                "LEFT JOIN set_members m USING (set_id) GROUP BY s.set_id, s.name, s.created ORDER BY lower(s.name), s.name, s.set_id"
            ).fetchall()
        return [FeatureSet(int(r[0]), str(r[1]), int(r[2]), r[3]) for r in rows]

    def get_set(self, name: str) -> FeatureSet | None:
        return next((s for s in self.list_sets() if s.name == name), None)

    def create_set(self, name: str) -> int:
        name = _clean_name(name)
        with self.cursor() as cur:
            if _find(cur, name) is not None:
                raise WorkspaceError(f"a set named {name!r} already exists")
            row = _first(
                cur,
                "INSERT INTO feature_sets (name, created) VALUES (?, ?) RETURNING set_id",
                [name, datetime.now()],
            )
        assert row is not None
        return int(row[0])

    def rename_set(self, set_id: int, new_name: str) -> None:
        new_name = _clean_name(new_name)
        with self.cursor() as cur:
            _require(cur, set_id)
            other = _find(cur, new_name)
            if other is not None and other != set_id:
                raise WorkspaceError(f"a set named {new_name!r} already exists")
            cur.execute("UPDATE feature_sets SET name = ? WHERE set_id = ?", [new_name, set_id])

    def delete_set(self, set_id: int) -> None:
        with self.cursor() as cur:
            _require(cur, set_id)
            cur.execute("DELETE FROM set_members WHERE set_id = ?", [set_id])
            cur.execute("DELETE FROM feature_sets WHERE set_id = ?", [set_id])

    # ---- members ----
    def add_features(self, set_id: int, keys: list[tuple[str, int]]) -> int:
        """Add (sae_id, feature) keys; returns how many were new."""
        with self.cursor() as cur:
            _require(cur, set_id)
            before = _count(cur, set_id)
            cur.register("_keys", _key_frame(keys))
            try:
                cur.execute(
                    "INSERT INTO set_members (set_id, sae_id, feature, added) "
                    "SELECT ?, k.sae_id, k.feature, ? FROM _keys k "
                    "ANTI JOIN (SELECT * FROM set_members WHERE set_id = ?) m "
                    "ON m.sae_id = k.sae_id AND m.feature = k.feature ORDER BY k.i",
                    [set_id, datetime.now(), set_id],
                )
            finally:
                cur.unregister("_keys")
            return _count(cur, set_id) - before

    def remove_features(self, set_id: int, keys: list[tuple[str, int]]) -> None:
        with self.cursor() as cur:
            _require(cur, set_id)
            cur.register("_keys", _key_frame(keys))
            try:
                cur.execute(
                    "DELETE FROM set_members m USING _keys k WHERE m.set_id = ? "
                    "AND m.sae_id = k.sae_id AND m.feature = k.feature",
                    [set_id],
                )
            finally:
                cur.unregister("_keys")

    def members(self, set_id: int) -> list[tuple[str, int]]:
        """(sae_id, feature) in the order they were added."""
        with self.cursor() as cur:
            rows = cur.execute(
                "SELECT sae_id, feature FROM set_members WHERE set_id = ? ORDER BY seq", [set_id]
            ).fetchall()
        return [(str(r[0]), int(r[1])) for r in rows]

    def sets_containing(self, sae_id: str, feature: int) -> list[str]:
        with self.cursor() as cur:
            rows = cur.execute(
                "SELECT s.name FROM feature_sets s JOIN set_members m USING (set_id) "
                "WHERE m.sae_id = ? AND m.feature = ? ORDER BY s.name",
                [sae_id, int(feature)],
            ).fetchall()
        return [str(r[0]) for r in rows]


def _key_frame(keys: list[tuple[str, int]]) -> pd.DataFrame:
    """(sae_id, feature) keys as a frame, first occurrence kept, with their order `i`."""
    frame = pd.DataFrame(
        {
            "sae_id": pd.Series([str(k[0]) for k in keys], dtype=object),
            "feature": pd.Series([int(k[1]) for k in keys], dtype="int32"),
        }
    )
    frame = frame.drop_duplicates(["sae_id", "feature"])
    return frame.assign(i=range(len(frame)))


def _clean_name(name: str) -> str:
    name = " ".join(str(name).split())
    if not name:
        raise WorkspaceError("a set needs a name")
    if len(name) > MAX_NAME:
        raise WorkspaceError(f"set names are at most {MAX_NAME} characters")
    return name


def _first(cur: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> tuple[Any, ...] | None:
    """The first row; all rows are fetched (a half-read result blocks the connection)."""
    rows = cur.execute(sql, params).fetchall()
    return tuple(rows[0]) if rows else None


def _find(cur: duckdb.DuckDBPyConnection, name: str) -> int | None:
    row = _first(cur, "SELECT set_id FROM feature_sets WHERE name = ?", [name])
    return int(row[0]) if row else None


def _require(cur: duckdb.DuckDBPyConnection, set_id: int) -> None:
    if _first(cur, "SELECT 1 FROM feature_sets WHERE set_id = ?", [int(set_id)]) is None:
        raise WorkspaceError(f"no feature set with id {set_id}")


def _count(cur: duckdb.DuckDBPyConnection, set_id: int) -> int:
    row = _first(cur, "SELECT count(*) FROM set_members WHERE set_id = ?", [set_id])
    return int(row[0]) if row else 0
