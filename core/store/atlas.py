"""Opening atlases: read-only for the app, a temporary file + rename for the build.

Layout of an atlas at `dir/atlas.duckdb`:
  dir/atlas.duckdb            the finished, immutable atlas (opened read-only)
  dir/atlas.duckdb.tmp        a build in progress (resumable; renamed into place when complete)
  dir/acts-<run_id>/<sae>/part-*.parquet   sparse activations (sae_id, doc_id, pos, feature, act)
"""

from __future__ import annotations

import os
import shutil
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from core.store import schema


class AtlasError(RuntimeError):
    """An atlas that is missing, incomplete or from an incompatible version."""


def tmp_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def sae_dir_name(sae_id: str) -> str:
    """'L12/resid_post' -> 'L12_resid_post' (file-system safe)."""
    return sae_id.replace("/", "_")


def _acts_glob(db_path: Path, acts_dir: str | None) -> str | None:
    if not acts_dir:
        return None
    folder = db_path.parent / acts_dir
    if not any(folder.glob("*/*.parquet")):
        return None
    return str(folder / "*" / "*.parquet")


class Atlas:
    """A read-only atlas shared by all app sessions; `cursor()` gives each call its own cursor."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise AtlasError(f"no atlas at {self.path}; build one with `sae-atlas build`")
        self._con = duckdb.connect(str(self.path), read_only=True)
        self._lock = threading.Lock()
        row = self._con.execute(
            "SELECT acts_dir FROM runs ORDER BY created DESC LIMIT 1"
        ).fetchone()
        self.acts_glob = _acts_glob(self.path, row[0] if row else None)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for one thread, with the `activations` view over the Parquet side files."""
        with self._lock:
            cur = self._con.cursor()
        define_activations_view(cur, self.acts_glob)
        return cur

    def close(self) -> None:
        self._con.close()


def define_activations_view(con: duckdb.DuckDBPyConnection, acts_glob: str | None) -> None:
    if acts_glob:
        src = f"read_parquet('{acts_glob}')"
    else:  # an atlas without side files still answers with an empty view
        src = (
            "(SELECT NULL::VARCHAR sae_id, NULL::INTEGER doc_id, NULL::INTEGER pos, "
            "NULL::INTEGER feature, NULL::REAL act WHERE false)"
        )
    con.execute(f"CREATE OR REPLACE TEMP VIEW activations AS SELECT * FROM {src}")


class AtlasWriter:
    """The build's handle: writes into `atlas.duckdb.tmp`, records finished stages, renames at the end.

    An existing atlas is never modified in place: with `--overwrite` it is copied to the
    temporary file first, and only the final rename replaces it.
    """

    def __init__(self, path: Path, overwrite: set[str] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp_path(self.path)
        if not self.tmp.exists() and self.path.exists():
            shutil.copyfile(self.path, self.tmp)  # start from the finished atlas, never touch it
        self.con = duckdb.connect(str(self.tmp))
        for stmt in schema.create_statements():
            self.con.execute(stmt)
        for stage in overwrite or ():
            self.con.execute("DELETE FROM stages WHERE stage = ?", [stage])

    def done(self, stage: str) -> bool:
        row = self.con.execute("SELECT 1 FROM stages WHERE stage = ?", [stage]).fetchone()
        return row is not None

    def finish_stage(
        self, stage: str, seconds: float, detail: dict[str, Any] | None = None
    ) -> None:
        import json

        self.con.execute(
            "INSERT OR REPLACE INTO stages VALUES (?, ?, ?, ?)",
            [stage, datetime.now(), seconds, json.dumps(detail or {})],
        )
        self.con.execute("CHECKPOINT")

    def replace_rows(
        self, table: str, df: Any, where: str = "", params: list[Any] | None = None
    ) -> None:
        """Idempotent bulk write: delete this stage's earlier rows, insert the frame by name."""
        self.con.execute(f"DELETE FROM {table} {('WHERE ' + where) if where else ''}", params or [])
        self.con.register("_frame", df)
        try:
            self.con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _frame")
        finally:
            self.con.unregister("_frame")

    def commit(self) -> Path:
        """Close the temporary DB and atomically rename it over the atlas."""
        self.con.execute("CHECKPOINT")
        self.con.close()
        os.replace(self.tmp, self.path)
        return self.path

    def close(self) -> None:
        try:
            self.con.close()
        except duckdb.Error:
            pass
