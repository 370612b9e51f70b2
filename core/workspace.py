"""The writable workspace: user state (named feature sets) in a small DuckDB beside the atlas.

The atlas stays immutable and read-only; everything a user creates lives here. One
`Workspace` is shared by all app sessions, and several app processes may share one file: every
operation opens the file, does its work and closes it again under a thread lock, retrying for a
few seconds while another process holds DuckDB's file lock.
The tables and their SQL are in core/store/workspace_sql.py; saved steers
(core/steering/saved.py) share the file through `Workspace.cursor()`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd

from core.store import workspace_sql as sql
from core.store.db import Cursor

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

    def __init__(self, path: Path, lock_wait_s: float = 10.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock_wait_s = lock_wait_s
        self._lock = threading.Lock()
        with self.cursor() as cur:
            sql.create_tables(cur, sql.SET_SCHEMA)

    @contextmanager
    def cursor(self) -> Iterator[Cursor]:
        """A connection to the file held for one operation (one writer at a time)."""
        with self._lock:
            con = self._connect()
            try:
                yield con
            finally:
                con.close()

    def _connect(self) -> duckdb.DuckDBPyConnection:
        """Open the file, waiting while another process holds it (it does, for milliseconds)."""
        deadline = time.monotonic() + self.lock_wait_s
        while True:
            try:
                return duckdb.connect(str(self.path))
            except duckdb.IOException as err:
                if "lock" not in str(err).lower():
                    raise
                if time.monotonic() > deadline:
                    raise WorkspaceError(
                        f"the workspace {self.path} is busy (another process keeps it open); "
                        "try again"
                    ) from err
                time.sleep(0.02)

    def close(self) -> None:
        """Nothing stays open between operations; kept for callers that close workspaces."""

    # ---- sets ----
    def list_sets(self) -> list[FeatureSet]:
        with self.cursor() as cur:
            rows = sql.list_sets(cur)
        return [FeatureSet(int(r[0]), str(r[1]), int(r[2]), r[3]) for r in rows]

    def get_set(self, name: str) -> FeatureSet | None:
        return next((s for s in self.list_sets() if s.name == name), None)

    def create_set(self, name: str, keys: list[tuple[str, int]] | None = None) -> int:
        """A new set, with `keys` (sae_id, feature) as its first members: both or neither."""
        name = _clean_name(name)
        with self.cursor() as cur:
            if sql.find_set(cur, name) is not None:
                raise WorkspaceError(f"a set named {name!r} already exists")
            return sql.create_set(cur, name, _key_frame(keys or []), datetime.now())

    def rename_set(self, set_id: int, new_name: str) -> None:
        new_name = _clean_name(new_name)
        with self.cursor() as cur:
            _require(cur, set_id)
            other = sql.find_set(cur, new_name)
            if other is not None and other != set_id:
                raise WorkspaceError(f"a set named {new_name!r} already exists")
            sql.rename_set(cur, set_id, new_name)

    def delete_set(self, set_id: int) -> None:
        with self.cursor() as cur:
            _require(cur, set_id)
            sql.delete_set(cur, set_id)

    # ---- members ----
    def add_features(self, set_id: int, keys: list[tuple[str, int]]) -> int:
        """Add (sae_id, feature) keys; returns how many were new."""
        with self.cursor() as cur:
            _require(cur, set_id)
            before = sql.count_members(cur, set_id)
            sql.insert_members(cur, set_id, _key_frame(keys), datetime.now())
            return sql.count_members(cur, set_id) - before

    def remove_features(self, set_id: int, keys: list[tuple[str, int]]) -> None:
        with self.cursor() as cur:
            _require(cur, set_id)
            sql.delete_members(cur, set_id, _key_frame(keys))

    def members(self, set_id: int) -> list[tuple[str, int]]:
        """(sae_id, feature) in the order they were added."""
        with self.cursor() as cur:
            rows = sql.members(cur, set_id)
        return [(str(r[0]), int(r[1])) for r in rows]

    def sets_containing(self, sae_id: str, feature: int) -> list[str]:
        with self.cursor() as cur:
            return sql.sets_containing(cur, sae_id, feature)


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


def _require(cur: Cursor, set_id: int) -> None:
    if not sql.set_exists(cur, set_id):
        raise WorkspaceError(f"no feature set with id {set_id}")
