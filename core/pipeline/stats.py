"""Per-feature statistics from the sparse activations (METHODS §3), all exact: aggregates in
DuckDB, example windows in numpy.

Cost per SAE: O(nnz) for the aggregates and top-n / interval picks (hash aggregates, n fixed),
O(nnz log nnz) to sort the activations for the windows, O(examples × window) for the windows;
nnz = activating (token, feature) pairs ≈ N·k. Memory O(nnz + N) (all tokens as one array).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from core.pipeline.config import StatsConfig
from core.store import stats_sql


def _q(con: duckdb.DuckDBPyConnection, sql: str, **params: object) -> pd.DataFrame:
    return con.execute(sql, params).df()


@dataclass
class SaeStats:
    features: pd.DataFrame  # one row per feature, with top_tokens
    histograms: pd.DataFrame  # one row per firing feature
    examples: pd.DataFrame  # top and interval examples with their windows


def sae_statistics(
    con: duckdb.DuckDBPyConnection,
    sae_id: str,
    d_sae: int,
    n_tokens: int,
    cfg: StatsConfig,
    corpus: Corpus,
) -> SaeStats:
    """Every per-feature statistic of one SAE from one scan of its activations."""
    con.execute(stats_sql.SAE_ACTS, {"sae": sae_id})
    try:
        feats = _q(con, stats_sql.FEATURES, sae=sae_id, d_sae=d_sae, n_tokens=n_tokens)
        hist = histograms(con, sae_id, cfg.n_bins)
        ex, tops = examples(con, sae_id, cfg, corpus)
    finally:
        con.execute(stats_sql.DROP_SAE_ACTS)
    return SaeStats(feats.merge(tops, on="feature", how="left"), hist, ex)


def histograms(con: duckdb.DuckDBPyConnection, sae_id: str, n_bins: int) -> pd.DataFrame:
    """One row per firing feature: edges (n_bins+1,) and counts (n_bins,) over (0, max]."""
    bins = _q(con, stats_sql.HISTOGRAM_BINS, n_bins=n_bins)
    feats, row = np.unique(bins["feature"].to_numpy(), return_inverse=True)
    counts = np.zeros((len(feats), n_bins), dtype=np.int64)
    counts[row, bins["bin"].to_numpy()] = bins["n"].to_numpy()
    mx = np.zeros(len(feats))
    mx[row] = bins["mx"].to_numpy()
    edges = (mx[:, None] * np.arange(n_bins + 1) / n_bins).astype(np.float32)  # (n_feat, n_bins+1)
    return pd.DataFrame(
        {
            "sae_id": sae_id,
            "feature": feats.astype(np.int32),
            "edges": list(edges),
            "counts": list(counts),
        }
    )


def examples(
    con: duckdb.DuckDBPyConnection, sae_id: str, cfg: StatsConfig, corpus: Corpus
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Top-n and interval-sampled examples with their token windows and per-token activations,
    and each feature's most frequent top-example tokens."""
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
        tops = _q(con, stats_sql.TOP_TOKENS, n=5)
    finally:
        con.unregister("_examples")
    win = windows(con, ex, cfg.window_left, cfg.window_right, corpus)
    return pd.concat([ex, win], axis=1), tops


class Corpus:
    """Every token as one flat array in (doc_id, pos) order; row of (doc, pos) = start[doc] + pos."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        t = con.sql(stats_sql.ALL_TOKENS).to_arrow_table()
        self.token_str = t["token_str"].combine_chunks()  # (n_tokens,) arrow strings
        self.token_id = t["token_id"].combine_chunks()  # (n_tokens,) int32
        doc = t["doc_id"].to_numpy().astype(np.int64)
        n_docs = int(doc.max()) + 1 if len(doc) else 0
        self.length = np.bincount(doc, minlength=n_docs)  # (n_docs,)
        self.start = np.concatenate([[0], np.cumsum(self.length)[:-1]]).astype(np.int64)

    def row(self, doc: np.ndarray, pos: np.ndarray) -> np.ndarray:
        return self.start[doc] + pos


def _expand(start: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranges [start_i, start_i + length_i) -> (range i, value) of every element, concatenated."""
    owner = np.repeat(np.arange(len(start)), length)
    skip = np.cumsum(length) - length  # elements before each range
    return owner, start[owner] + np.arange(len(owner)) - skip[owner]


WINDOW_CELLS_PER_BATCH = 4_000_000
"""Window cells built at a time: the int64 intermediates stay ~100 MB whatever d_sae is."""


def windows(
    con: duckdb.DuckDBPyConnection,
    ex: pd.DataFrame,
    left: int,
    right: int,
    corpus: Corpus,
) -> pd.DataFrame:
    """Per example row: tokens [pos-left, pos+right] of its document (cut at the document's
    ends), the example feature's activation on each (0 where it does not fire) and the centre.

    Vectorised (sorted keys + searchsorted) rather than a per-token SQL join, which expanded
    ~4.7M window cells per SAE and was the largest fixed cost of the statistics. Built in
    batches of examples: at 65k features a SAE has ~150M window cells, and one pass would hold
    several int64 arrays of that length; only the output (Arrow lists) grows with d_sae.
    """
    a = con.execute(stats_sql.SAE_ACTIVATIONS).fetchnumpy()
    n_rows = max(len(corpus.token_str), 1)
    # key = feature * n_rows + row: sorted, the acts of feature f on rows [lo, hi] are one slice
    key = np.asarray(a["feature"], np.int64) * n_rows
    key += corpus.row(np.asarray(a["doc_id"], np.int64), np.asarray(a["pos"], np.int64))
    order = np.argsort(key)
    acts = _SortedActs(key[order], np.asarray(a["act"], np.float32)[order], n_rows)
    per_batch = max(1, WINDOW_CELLS_PER_BATCH // (left + right + 1))
    parts = [
        _window_batch(ex.iloc[lo : lo + per_batch], left, right, corpus, acts)
        for lo in range(0, len(ex), per_batch)
    ]
    if not parts:
        parts = [_window_batch(ex, left, right, corpus, acts)]
    tokens = pa.chunked_array([p[1] for p in parts], pa.list_(pa.string()))
    cell_acts = pa.chunked_array([p[2] for p in parts], pa.list_(pa.float32()))
    ids = pa.chunked_array([p[3] for p in parts], pa.list_(pa.int32()))
    return pd.DataFrame(
        {
            "center": np.concatenate([p[0] for p in parts]),
            "tokens": pd.Series(pd.arrays.ArrowExtensionArray(tokens)),
            "acts": pd.Series(pd.arrays.ArrowExtensionArray(cell_acts)),
            "token_ids": pd.Series(pd.arrays.ArrowExtensionArray(ids)),
        }
    ).set_axis(ex.index)


@dataclass
class _SortedActs:
    """One SAE's activations sorted by key = feature * n_rows + token row."""

    key: np.ndarray  # (nnz,) int64
    act: np.ndarray  # (nnz,) float32
    n_rows: int


def _window_batch(
    ex: pd.DataFrame, left: int, right: int, corpus: Corpus, acts: _SortedActs
) -> tuple[np.ndarray, pa.ListArray, pa.ListArray, pa.ListArray]:
    """(centre, tokens, acts, token ids) of the windows of examples `ex`."""
    doc = ex["doc_id"].to_numpy(np.int64)
    pos = ex["pos"].to_numpy(np.int64)
    lo = np.maximum(pos - left, 0)
    hi = np.minimum(pos + right, corpus.length[doc] - 1)
    n = hi - lo + 1  # (n_examples,) window lengths
    offsets = np.concatenate([[0], np.cumsum(n)]).astype(np.int32)
    first = corpus.row(doc, lo)  # (n_examples,) row of each window's first token
    _, cell_row = _expand(first, n)  # (n_cells,) token row of each window cell
    # two searches per window (not one per cell); the slice between them lands in the cells
    base = ex["feature"].to_numpy(np.int64) * acts.n_rows + first
    a0 = np.searchsorted(acts.key, base)
    hit_ex, hit = _expand(a0, np.searchsorted(acts.key, base + n) - a0)
    cell_act = np.zeros(offsets[-1], np.float32)
    cell_act[offsets[:-1][hit_ex] + acts.key[hit] - base[hit_ex]] = acts.act[hit]
    rows = pa.array(cell_row)
    tokens = pa.ListArray.from_arrays(offsets, corpus.token_str.take(rows))
    ids = pa.ListArray.from_arrays(offsets, corpus.token_id.take(rows).cast(pa.int32()))
    return (
        (pos - lo).astype(np.int32),
        tokens,
        pa.ListArray.from_arrays(offsets, pa.array(cell_act)),
        ids,
    )
