"""All SQL of the cross-layer flow: the build's co-firing counts and writes, the app's reads.

Tables: flow_edges, flow_classes, flow_score_hist, flow_validation (see schema.FLOW_TABLES).
Every function takes a DuckDB connection (or cursor); the reads return DataFrames.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from core.store.db import Cursor, frame, ident, scalar
from core.store.runs import replace_table

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


def alive_features(con: Cursor, sae_id: str) -> pd.DataFrame:
    """Features of one SAE that fire at least once (column `feature`)."""
    return frame(con, _ALIVE, {"sae": sae_id})


def pair_counts(con: Cursor, src_sae: str, dst_sae: str, pairs: pd.DataFrame) -> pd.DataFrame:
    """Per pair: firings of each side and tokens where both fire (same doc_id, pos)."""
    con.register("_pairs", pairs)
    try:
        return frame(con, _PAIR_COUNTS, {"src": src_sae, "dst": dst_sae})
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


def incident_edges(con: Cursor, sae_id: str, feature: int) -> pd.DataFrame:
    """Every stored edge that starts or ends at the feature, both directions, all ranks."""
    return frame(con, _INCIDENT, {"sae": sae_id, "feature": int(feature)})


_ONE_SIDE = """
SELECT src_sae, src_feature, dst_sae, dst_feature, kind, direction, rank, cosine
FROM flow_edges WHERE direction = $direction AND {end}_sae = $sae AND {end}_feature = $feature
ORDER BY kind, rank
"""
# flow_edges is stored sorted by (direction, the side each direction is looked up by): see
# cluster_edges. Each lookup then reads one row group instead of the table.
_CLUSTER = """
CREATE OR REPLACE TABLE flow_edges AS SELECT * FROM flow_edges ORDER BY direction,
    CASE direction WHEN 'back' THEN dst_sae ELSE src_sae END,
    CASE direction WHEN 'back' THEN dst_feature ELSE src_feature END, kind, rank
"""


def cluster_edges(con: Cursor) -> None:
    """Sort flow_edges for the feature page's lookups: O(E log E) once, at commit."""
    con.execute(_CLUSTER)


def predecessors(con: Cursor, sae_id: str, feature: int) -> pd.DataFrame:
    """The feature's top-k predecessor candidates per kind (R / M / A), best first."""
    sql = _ONE_SIDE.format(end="dst")
    return frame(con, sql, {"direction": "back", "sae": sae_id, "feature": int(feature)})


def successors(con: Cursor, sae_id: str, feature: int) -> pd.DataFrame:
    """The feature's top-k successor candidates (next residual layer, or the same layer's
    residual SAE for a module feature), best first."""
    sql = _ONE_SIDE.format(end="src")
    return frame(con, sql, {"direction": "fwd", "sae": sae_id, "feature": int(feature)})


def feature_class(con: Cursor, sae_id: str, feature: int) -> pd.DataFrame:
    """The feature's flow_classes row (empty for a non-residual feature)."""
    return frame(con, _CLASS, {"sae": sae_id, "feature": int(feature)})


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


def class_shares(con: Cursor) -> pd.DataFrame:
    """Per residual SAE: each class's count and share of the classified features."""
    return frame(con, _CLASS_SHARES)


def score_hist(con: Cursor) -> pd.DataFrame:
    """Score histograms (observed and random baseline) with the thresholds used."""
    return frame(con, _SCORE_HIST)


def validation(con: Cursor) -> pd.DataFrame:
    """Co-firing summary of matched vs random pairs per layer pair."""
    return frame(con, _VALIDATION)


def has_flow(con: Cursor) -> bool:
    """Whether this atlas has flow tables with rows (older atlases do not)."""
    try:
        return bool(scalar(con, "SELECT count(*) FROM flow_edges"))
    except duckdb.Error:
        return False


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
    con: Cursor, sae_id: str, source: str, k: int = 10, min_fire: int = 200
) -> pd.DataFrame:
    """Features that fire almost only on one corpus source (e.g. wiki_fr): steering targets."""
    return frame(
        con, _SOURCE_FEATURES, {"sae": sae_id, "source": source, "k": k, "min_fire": min_fire}
    )


def first_residual_sae(con: Cursor) -> str | None:
    sae_id = scalar(con, "SELECT sae_id FROM saes WHERE site = 'resid_post' ORDER BY layer LIMIT 1")
    return None if sae_id is None else str(sae_id)


def replace_flow_tables(con: Cursor, tables: dict[str, pd.DataFrame]) -> None:
    """Each flow table's rows replaced by its frame; an empty frame empties the table."""
    for name, df in tables.items():
        if df.empty:
            con.execute(f"DELETE FROM {ident(name)}")
        else:
            replace_table(con, name, df)
