"""The build's run record and its side files: the latest run, starting and finishing a run, the
`activations` view over the run's Parquet folder, and replacing a table's rows from a frame.

An atlas holds one run (the latest); its `acts_dir` names the folder of Parquet activations
beside the atlas file: `<atlas dir>/<acts_dir>/<sae>/part-*.parquet`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from core.store.db import Cursor, first, ident, literal

_RUN_COLUMNS = "run_id, created, config, versions, timings, acts_dir"


@dataclass(frozen=True)
class Run:
    run_id: str
    created: datetime
    config: dict[str, Any]
    versions: dict[str, Any]
    timings: dict[str, Any]
    acts_dir: str | None


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value if value is not None else {}


def latest_run(cur: Cursor) -> Run | None:
    """The run the atlas was built by (the newest), with its JSON columns parsed."""
    row = first(cur, f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY created DESC LIMIT 1")
    if row is None:
        return None
    return Run(row[0], row[1], _json(row[2]), _json(row[3]), _json(row[4]), row[5])


def has_run(cur: Cursor) -> bool:
    return first(cur, "SELECT 1 FROM runs LIMIT 1") is not None


def start_run(
    cur: Cursor, run_id: str, config: dict[str, Any], versions: dict[str, Any], acts_dir: str
) -> None:
    """Replace the run record: an atlas describes exactly one run."""
    cur.execute("DELETE FROM runs")
    cur.execute(
        "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
        [run_id, datetime.now(), json.dumps(config), json.dumps(versions), "{}", acts_dir, 1],
    )


def finish_run(cur: Cursor, timings: dict[str, Any], config: dict[str, Any]) -> None:
    cur.execute(
        "UPDATE runs SET timings = ?, config = ?", [json.dumps(timings), json.dumps(config)]
    )


def set_config(cur: Cursor, config: dict[str, Any]) -> None:
    """The run's config becomes `config` (stages re-run under a changed config)."""
    cur.execute("UPDATE runs SET config = ?", [json.dumps(config)])


def acts_glob(acts_folder: Path | None) -> str | None:
    """The Parquet glob of a run's activation folder, or None when it holds no files yet."""
    if acts_folder is None or not any(Path(acts_folder).glob("*/*.parquet")):
        return None
    return str(Path(acts_folder) / "*" / "*.parquet")


def define_activations_view(cur: Cursor, acts_folder: Path | None) -> None:
    """A temp view `activations(sae_id, doc_id, pos, feature, act)` over the run's Parquet files;
    empty (but typed) when there are none, so queries still answer."""
    glob = acts_glob(acts_folder)
    if glob:
        # a view cannot take parameters: the path goes in as an escaped string literal
        cur.execute(
            f"CREATE OR REPLACE TEMP VIEW activations AS SELECT * FROM read_parquet({literal(glob)})"
        )
        return
    cur.execute(
        "CREATE OR REPLACE TEMP VIEW activations AS SELECT NULL::VARCHAR sae_id, "
        "NULL::INTEGER doc_id, NULL::INTEGER pos, NULL::INTEGER feature, NULL::REAL act "
        "WHERE false"
    )


def replace_table(
    cur: Cursor, table: str, df: Any, where: str = "", params: list[Any] | None = None
) -> None:
    """Idempotent bulk write: delete the rows `where` selects (all without it), insert the
    frame by column name. `table` and `where` come from code, never from user text."""
    cur.execute(f"DELETE FROM {ident(table)} {('WHERE ' + where) if where else ''}", params or [])
    cur.register("_frame", df)
    try:
        cur.execute(f"INSERT INTO {ident(table)} BY NAME SELECT * FROM _frame")
    finally:
        cur.unregister("_frame")


def set_memory_limit(cur: Cursor, limit: str | None) -> None:
    """DuckDB's memory_limit for this connection (e.g. '8GB', '50%'); None keeps its default
    (80 % of RAM). The statistics' hash aggregates spill to disk beyond it."""
    if limit is not None:
        cur.execute(f"SET memory_limit = {literal(limit)}")
