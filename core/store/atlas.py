"""Opening atlases: read-only for the app, a temporary file + rename for the build.

Layout of an atlas at `dir/atlas.duckdb`:
  dir/atlas.duckdb            the finished, immutable atlas (opened read-only)
  dir/atlas.duckdb.tmp        a build in progress (resumable; renamed into place when complete)
  dir/acts-<run_id>/<sae>/part-*.parquet   sparse activations (sae_id, doc_id, pos, feature, act)
  dir/atlas.duckdb.vectors/   the explanation-embedding index (core.store.vectors)
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Any

import duckdb

from core.store import schema, search_index
from core.store.pipeline_sql import forget_stages, record_stage, stage_done
from core.store.runs import define_activations_view, latest_run, replace_table


class AtlasError(RuntimeError):
    """An atlas that is missing, incomplete or from an incompatible version."""


def tmp_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def sae_dir_name(sae_id: str) -> str:
    """'L12/resid_post' -> 'L12_resid_post' (file-system safe)."""
    return sae_id.replace("/", "_")


class Atlas:
    """A read-only atlas shared by all app sessions; `cursor()` gives each call its own cursor.

    Opening checks the file is a complete atlas (readable, every table, a run of a schema this
    code reads, readable activations) and raises AtlasError naming what is missing; nothing is
    ever written beside it.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise AtlasError(f"no atlas at {self.path}; build one with `sae-atlas build`")
        try:
            self._con = duckdb.connect(str(self.path), read_only=True)
        except duckdb.Error as err:
            raise _incomplete(f"a readable DuckDB database ({_first_line(err)})") from err
        self._lock = threading.Lock()
        try:
            self.acts_folder = _check(self._con, self.path)
        except BaseException:
            self._con.close()
            raise

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for one thread, with the `activations` view over the Parquet side files."""
        with self._lock:
            cur = self._con.cursor()
        define_activations_view(cur, self.acts_folder)
        return cur

    def close(self) -> None:
        self._con.close()


def _incomplete(missing: str) -> AtlasError:
    return AtlasError(f"this file is not a complete atlas: missing {missing}")


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _check(con: duckdb.DuckDBPyConnection, path: Path) -> Path | None:
    """The run's activation folder, after checking every table, the run and the activations."""
    present = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    missing = [t for t in schema.all_tables() if t not in present]
    if missing:
        raise _incomplete(f"table{'s' * (len(missing) > 1)} {', '.join(missing)}")
    try:
        run = latest_run(con)
        version = con.execute("SELECT max(schema_version) FROM runs").fetchone()
    except duckdb.Error as err:
        raise _incomplete(f"a readable run record ({_first_line(err)})") from err
    if run is None:
        raise _incomplete("its run record (the runs table is empty)")
    if version and version[0] is not None and version[0] > schema.SCHEMA_VERSION:
        raise AtlasError(
            f"this atlas has schema version {version[0]}; this SAE Atlas reads up to "
            f"{schema.SCHEMA_VERSION}: update SAE Atlas to open it"
        )
    if not run.acts_dir:
        return None
    folder = path.parent / run.acts_dir
    if not folder.is_dir():
        raise _incomplete(f"its activations folder {folder}")
    cur = con.cursor()
    try:
        define_activations_view(cur, folder)
        cur.execute("SELECT count(*) FROM activations").fetchall()
    except duckdb.Error as err:
        raise _incomplete(f"readable activations in {folder} ({_first_line(err)})") from err
    finally:
        cur.close()
    return folder


class AtlasWriter:
    """The build's handle: writes into `atlas.duckdb.tmp`, records finished stages, renames at the end.

    An existing atlas is never modified in place: with `--overwrite` it is copied to the
    temporary file first, and only the final rename replaces it.
    """

    def __init__(self, path: Path, overwrite: set[str] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp_path(self.path)
        self.search_detail: dict[str, Any] = {}
        if not self.tmp.exists() and self.path.exists():
            shutil.copyfile(self.path, self.tmp)  # start from the finished atlas, never touch it
        self.con = duckdb.connect(str(self.tmp))
        for stmt in schema.create_statements():
            self.con.execute(stmt)
        forget_stages(self.con, overwrite or ())
        search_index.drop_feature_rows(self.con)  # stages read joined rows; commit rewrites it

    def done(self, stage: str) -> bool:
        return stage_done(self.con, stage)

    def finish_stage(
        self,
        stage: str,
        seconds: float,
        peak_rss_mb: float | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Record a finished stage and its cost; a resumed build skips it from then on."""
        record_stage(self.con, stage, seconds, peak_rss_mb, detail)

    def replace_rows(
        self, table: str, df: Any, where: str = "", params: list[Any] | None = None
    ) -> None:
        """Idempotent bulk write: delete this stage's earlier rows, insert the frame by name."""
        replace_table(self.con, table, df, where, params)

    def commit(self) -> Path:
        """Write the search indexes, close the temporary DB and atomically rename it over the
        atlas (then its vector index over the old one; a crash between the two renames leaves
        a stale index, which the app detects by its stamp and does not use)."""
        self.search_detail = search_index.prepare(self.con, self.path)
        self.con.execute("CHECKPOINT")
        self.con.close()
        os.replace(self.tmp, self.path)
        search_index.publish(self.path)
        return self.path

    def close(self) -> None:
        try:
            self.con.close()
        except duckdb.Error:
            pass


PREFETCH_CHUNK = 16 << 20
PREFETCH_SHARE = 0.5
"""Prefetch only an atlas smaller than this share of the memory the OS has available."""


def prefetch(path: Path) -> int:
    """Read the atlas file once, sequentially, so the OS holds it in its page cache: a page's
    random reads (a feature's card, a lookup) then come from memory, not disk. At 1M features a
    cold cache made the feature page's p95 80–125 ms; after this 22 ms (the read took 15 s for
    4.9 GB). Skipped for a file larger than PREFETCH_SHARE of available memory. Returns the
    bytes read. O(file size) I/O, O(1) memory; meant for a background thread."""
    try:
        size = path.stat().st_size
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0
    if size > PREFETCH_SHARE * free:
        return 0
    done, buf = 0, bytearray(PREFETCH_CHUNK)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):  # the read releases the GIL
            done += n
    return done
