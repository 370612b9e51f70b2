"""The build's bookkeeping in the atlas: which stages finished (with their seconds and peak
memory), the corpus tokens the stages read back, and the training log of each trained SAE.

The run record itself (config, versions, timings, activation folder) lives in runs.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from core.store.db import Cursor, first, frame

# ---- stages -----------------------------------------------------------------------------------


def stage_done(cur: Cursor, stage: str) -> bool:
    return first(cur, "SELECT 1 FROM stages WHERE stage = ?", [stage]) is not None


def finished_stages(cur: Cursor) -> set[str]:
    return {str(r[0]) for r in cur.execute("SELECT stage FROM stages").fetchall()}


def forget_stages(cur: Cursor, stages: Iterable[str]) -> None:
    """Mark stages as not done, so the next build runs them again."""
    for stage in stages:
        cur.execute("DELETE FROM stages WHERE stage = ?", [stage])


def record_stage(
    cur: Cursor,
    stage: str,
    seconds: float,
    peak_rss_mb: float | None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Mark a stage done, with its cost, and checkpoint: a killed build resumes after it."""
    cur.execute(
        "INSERT OR REPLACE INTO stages (stage, finished, seconds, peak_rss_mb, detail) "
        "VALUES (?, ?, ?, ?, ?)",
        [stage, datetime.now(), seconds, peak_rss_mb, json.dumps(detail or {})],
    )
    cur.execute("CHECKPOINT")


def stage_costs(cur: Cursor) -> dict[str, tuple[float, float | None]]:
    """stage -> (seconds, peak RSS in MB or None) of every finished stage, in finishing order."""
    rows = cur.execute(
        "SELECT stage, seconds, peak_rss_mb FROM stages ORDER BY finished"
    ).fetchall()
    return {r[0]: (float(r[1]), None if r[2] is None else float(r[2])) for r in rows}


# ---- corpus tokens ----------------------------------------------------------------------------


def token_ids(cur: Cursor) -> pd.DataFrame:
    """(doc_id, pos, token_id) of every corpus token, in (doc_id, pos) order."""
    return frame(cur, "SELECT doc_id, pos, token_id FROM tokens ORDER BY doc_id, pos")


def token_positions(cur: Cursor) -> tuple[np.ndarray, np.ndarray]:
    """(doc_id, pos) of every corpus token as two int32 arrays (n_tokens,), in that order."""
    got = cur.execute("SELECT doc_id, pos FROM tokens ORDER BY doc_id, pos").fetchnumpy()
    return np.asarray(got["doc_id"], np.int32), np.asarray(got["pos"], np.int32)


# ---- training logs ----------------------------------------------------------------------------
# A trained SAE's log is written when training ends, before the quality stage writes the rest of
# its `saes` row: the row starts as (sae_id, train_log) and the quality stage carries the log over.


def save_train_log(cur: Cursor, sae_id: str, log: dict[str, Any]) -> None:
    cur.execute("DELETE FROM saes WHERE sae_id = ?", [sae_id])
    cur.execute("INSERT INTO saes (sae_id, train_log) VALUES (?, ?)", [sae_id, json.dumps(log)])


def train_logs(cur: Cursor) -> dict[str, str]:
    """sae_id -> training log (JSON text) of every SAE that has one."""
    rows = cur.execute("SELECT sae_id, train_log FROM saes WHERE train_log IS NOT NULL").fetchall()
    return {r[0]: r[1] for r in rows}
