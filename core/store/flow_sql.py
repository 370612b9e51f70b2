"""All SQL of the cross-layer flow (issue 7): the build's co-firing counts and the app's reads.

Tables: flow_edges, flow_classes, flow_score_hist, flow_validation (see schema.FLOW_TABLES).
Every function takes a DuckDB connection (or cursor) and returns a DataFrame.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pandas as pd

Con = duckdb.DuckDBPyConnection


def _q(con: Con, sql: str, **params: Any) -> pd.DataFrame:
    return con.execute(sql, params).df()


# ---- build: same-token co-firing of feature pairs (needs the `activations` view) ---------------
_ALIVE = """
SELECT DISTINCT feature FROM activations WHERE sae_id = $sae ORDER BY feature
"""

# `_pairs` (pair, series, src_feature, dst_feature) is registered by the caller.
_PAIR_COUNTS = """
WITH a AS MATERIALIZED (
    SELECT doc_id, pos, feature FROM activations
    WHERE sae_id = $src AND feature IN (SELECT src_feature FROM _pairs)
), b AS MATERIALIZED (
    SELECT doc_id, pos, feature FROM activations
    WHERE sae_id = $dst AND feature IN (SELECT dst_feature FROM _pairs)
),
na AS (SELECT feature, count(*) AS n FROM a GROUP BY feature),
nb AS (SELECT feature, count(*) AS n FROM b GROUP BY feature),
nboth AS (
    SELECT p.pair, count(*) AS n
    FROM _pairs p
    JOIN a ON a.feature = p.src_feature
    JOIN b ON b.feature = p.dst_feature AND b.doc_id = a.doc_id AND b.pos = a.pos
    GROUP BY p.pair
)
SELECT p.pair, p.series, p.src_feature, p.dst_feature, coalesce(na.n, 0) AS n_src,
       coalesce(nb.n, 0) AS n_dst, coalesce(nboth.n, 0) AS n_both
FROM _pairs p
LEFT JOIN na ON na.feature = p.src_feature
LEFT JOIN nb ON nb.feature = p.dst_feature
LEFT JOIN nboth ON nboth.pair = p.pair
ORDER BY p.pair
"""


def alive_features(con: Con, sae_id: str) -> pd.DataFrame:
    """Features of one SAE that fire at least once (column `feature`)."""
    return _q(con, _ALIVE, sae=sae_id)


def pair_counts(con: Con, src_sae: str, dst_sae: str, pairs: pd.DataFrame) -> pd.DataFrame:
    """Per pair: firings of each side and tokens where both fire (same doc_id, pos)."""
    con.register("_pairs", pairs)
    try:
        return _q(con, _PAIR_COUNTS, src=src_sae, dst=dst_sae)
    finally:
        con.unregister("_pairs")


# ---- app: one feature's neighbourhood ----------------------------------------------------------
_INCIDENT = """
SELECT src_sae, src_feature, dst_sae, dst_feature, kind, direction, rank, cosine
FROM flow_edges
WHERE (dst_sae = $sae AND dst_feature = $feature) OR (src_sae = $sae AND src_feature = $feature)
ORDER BY direction, kind, rank
"""

_CLASS = """
SELECT * FROM flow_classes WHERE sae_id = $sae AND feature = $feature
"""


def incident_edges(con: Con, sae_id: str, feature: int) -> pd.DataFrame:
    """Every stored edge that starts or ends at the feature, both directions, all ranks."""
    return _q(con, _INCIDENT, sae=sae_id, feature=int(feature))


def predecessors(con: Con, sae_id: str, feature: int) -> pd.DataFrame:
    """The feature's top-k predecessor candidates per kind (R / M / A), best first."""
    df = incident_edges(con, sae_id, feature)
    mine = (df["direction"] == "back") & (df["dst_sae"] == sae_id) & (df["dst_feature"] == feature)
    return df[mine].reset_index(drop=True)


def successors(con: Con, sae_id: str, feature: int) -> pd.DataFrame:
    """The feature's top-k successor candidates (next residual layer, or the same layer's
    residual SAE for a module feature), best first."""
    df = incident_edges(con, sae_id, feature)
    mine = (df["direction"] == "fwd") & (df["src_sae"] == sae_id) & (df["src_feature"] == feature)
    return df[mine].reset_index(drop=True)


def feature_class(con: Con, sae_id: str, feature: int) -> pd.DataFrame:
    """The feature's flow_classes row (empty for a non-residual feature)."""
    return _q(con, _CLASS, sae=sae_id, feature=int(feature))


# ---- app: layer summaries ----------------------------------------------------------------------
_CLASS_SHARES = """
SELECT sae_id, any_value(layer) AS layer, flow_class, count(*) AS n,
       count(*) / sum(count(*)) OVER (PARTITION BY sae_id) AS share
FROM flow_classes WHERE flow_class IS NOT NULL
GROUP BY sae_id, flow_class
ORDER BY layer, sae_id, flow_class
"""

_SCORE_HIST = """
SELECT * FROM flow_score_hist ORDER BY sae_id, kind, series, bin
"""

_VALIDATION = """
SELECT * FROM flow_validation ORDER BY dst_sae, kind, series
"""

_NODE_INFO = """
SELECT n.sae_id, n.feature, f.density, f.max_act, f.top_tokens, c.flow_class, c.s_r, c.s_m, c.s_a
FROM _nodes n
LEFT JOIN features f USING (sae_id, feature)
LEFT JOIN flow_classes c USING (sae_id, feature)
"""


def class_shares(con: Con) -> pd.DataFrame:
    """Per residual SAE: each class's count and share of the classified features."""
    return _q(con, _CLASS_SHARES)


def score_hist(con: Con) -> pd.DataFrame:
    """Score histograms (observed and random baseline) with the thresholds used."""
    return _q(con, _SCORE_HIST)


def validation(con: Con) -> pd.DataFrame:
    """Co-firing summary of matched vs random pairs per layer pair."""
    return _q(con, _VALIDATION)


def node_info(con: Con, nodes: pd.DataFrame) -> pd.DataFrame:
    """Density, max_act, top tokens and flow class for (sae_id, feature) rows of `nodes`."""
    con.register("_nodes", nodes[["sae_id", "feature"]])
    try:
        return _q(con, _NODE_INFO)
    finally:
        con.unregister("_nodes")


def has_flow(con: Con) -> bool:
    """Whether this atlas has flow tables with rows (older atlases do not)."""
    try:
        row = con.execute("SELECT count(*) FROM flow_edges").fetchone()
    except duckdb.Error:
        return False
    return bool(row and row[0])


_SOURCE_FEATURES = """
WITH hits AS (
    SELECT a.feature, d.source = $source AS inside, count(*) AS n
    FROM activations a JOIN documents d USING (doc_id)
    WHERE a.sae_id = $sae GROUP BY ALL
)
SELECT feature, sum(n) FILTER (WHERE inside) / sum(n) AS share, sum(n) AS n_fire
FROM hits GROUP BY feature HAVING sum(n) >= $min_fire
ORDER BY share DESC, n_fire DESC LIMIT $k
"""


def source_features(
    con: Con, sae_id: str, source: str, k: int = 10, min_fire: int = 200
) -> pd.DataFrame:
    """Features that fire almost only on one corpus source (e.g. wiki_fr): steering targets."""
    return _q(con, _SOURCE_FEATURES, sae=sae_id, source=source, k=k, min_fire=min_fire)


def first_residual_sae(con: Con) -> str | None:
    row = con.execute(
        "SELECT sae_id FROM saes WHERE site = 'resid_post' ORDER BY layer LIMIT 1"
    ).fetchone()
    return None if row is None else str(row[0])
