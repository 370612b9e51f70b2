"""Per-feature statistics from the sparse activations (METHODS §3), all exact, all in DuckDB."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from core.build.config import StatsConfig
from core.store import stats_sql


def _q(con: duckdb.DuckDBPyConnection, sql: str, **params: object) -> pd.DataFrame:
    return con.execute(sql, params).df()


def feature_table(
    con: duckdb.DuckDBPyConnection, sae_id: str, d_sae: int, n_tokens: int
) -> pd.DataFrame:
    return _q(con, stats_sql.FEATURES, sae=sae_id, d_sae=d_sae, n_tokens=n_tokens)


def histograms(con: duckdb.DuckDBPyConnection, sae_id: str, n_bins: int) -> pd.DataFrame:
    """One row per firing feature: edges (n_bins+1,) and counts (n_bins,) over (0, max]."""
    bins = _q(con, stats_sql.HISTOGRAM_BINS, sae=sae_id, n_bins=n_bins)
    rows = []
    for feature, grp in bins.groupby("feature", sort=True):
        counts = np.zeros(n_bins, dtype=np.int64)
        counts[grp["bin"].to_numpy()] = grp["n"].to_numpy()
        mx = float(grp["mx"].iloc[0])
        edges = (np.arange(n_bins + 1) * mx / n_bins).astype(np.float32)
        rows.append(
            {
                "sae_id": sae_id,
                "feature": int(str(feature)),
                "edges": edges.tolist(),
                "counts": counts.tolist(),
            }
        )
    return pd.DataFrame(rows, columns=["sae_id", "feature", "edges", "counts"])


def examples(con: duckdb.DuckDBPyConnection, sae_id: str, cfg: StatsConfig) -> pd.DataFrame:
    """Top-n and interval-sampled examples with their token windows and per-token activations."""
    top = _q(con, stats_sql.TOP_EXAMPLES, sae=sae_id, n_top=cfg.n_top)
    inter = _q(
        con,
        stats_sql.INTERVAL_EXAMPLES,
        sae=sae_id,
        n_int=cfg.n_intervals,
        per_int=cfg.per_interval,
        seed=cfg.seed,
    )
    ex = pd.concat([top, inter], ignore_index=True)
    con.register("_examples", ex)
    try:
        win = _q(
            con, stats_sql.EXAMPLE_WINDOWS, sae=sae_id, left=cfg.window_left, right=cfg.window_right
        )
        tops = _q(con, stats_sql.TOP_TOKENS, n=5)
    finally:
        con.unregister("_examples")
    ex = ex.merge(win, on=["feature", "kind", "rank"], how="left")
    ex.attrs["top_tokens"] = tops
    return ex
