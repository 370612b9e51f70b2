"""SQL of the geometry stage and of the Map / Lobes pages (METHODS §5), as named functions.

Build-side functions take the build's DuckDB connection (with the `activations` view defined);
page-side functions take a read-only cursor. All return pandas frames.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from core.store import feature_rows as rows_sql
from core.store import queries as q
from core.store.db import frame, ident

# ---- build side ---------------------------------------------------------------------------------

# Non-overlapping windows of $T tokens per document; a short trailing window is dropped unless it
# is the document's only one. Facets come from `documents` (NULL topic etc. -> '(none)').
_WINDOWS = """
SELECT w.doc_id, w.w, w.n_tok,
       coalesce(d.source, '(none)') AS source, coalesce(d.topic, '(none)') AS topic,
       coalesce(d.language, '(none)') AS language
FROM (SELECT doc_id, pos // $T AS w, count(*) AS n_tok FROM tokens GROUP BY ALL) w
LEFT JOIN documents d USING (doc_id)
WHERE w.n_tok >= $min_tok OR w.w = 0
ORDER BY w.doc_id, w.w
"""

# (window index, feature) for every window in which the feature fires above the threshold.
_WINDOW_FIRING = """
SELECT DISTINCT wi.win, a.feature
FROM activations a
JOIN _windows wi ON wi.doc_id = a.doc_id AND wi.w = a.pos // $T
LEFT JOIN (SELECT feature, max_act FROM features WHERE sae_id = $sae) f USING (feature)
WHERE a.sae_id = $sae
  AND a.act > CASE WHEN $relative THEN $thr * coalesce(f.max_act, 0) ELSE $thr END
"""


def windows(con: duckdb.DuckDBPyConnection, window: int, min_tokens: int) -> pd.DataFrame:
    """One row per window: doc_id, w (window number in its document), n_tok, source, topic, language."""
    return con.execute(_WINDOWS, {"T": window, "min_tok": min_tokens}).df()


def window_firing(
    con: duckdb.DuckDBPyConnection,
    wins: pd.DataFrame,
    sae_id: str,
    window: int,
    threshold: float,
    relative: bool,
) -> pd.DataFrame:
    """Columns win (row of `wins`), feature: the distinct (window, feature) firing pairs."""
    frame = pd.DataFrame({"doc_id": wins["doc_id"], "w": wins["w"], "win": range(len(wins))})
    con.register("_windows", frame)
    try:
        return con.execute(
            _WINDOW_FIRING, {"T": window, "sae": sae_id, "thr": threshold, "relative": relative}
        ).df()
    finally:
        con.unregister("_windows")


def sae_shapes(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """sae_id, d_sae and weights_path of every SAE, by layer and site."""
    return con.execute("SELECT sae_id, d_sae, weights_path FROM saes ORDER BY layer, site").df()


def clear_table(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Empty one of the geometry stage's tables (`table` comes from code, never user text)."""
    con.execute(f"DELETE FROM {ident(table)}")


def feature_top_tokens(con: duckdb.DuckDBPyConnection, sae_id: str) -> pd.DataFrame:
    """feature, top_tokens (list) from the `features` table of one SAE."""
    return con.execute(
        "SELECT feature, top_tokens FROM features WHERE sae_id = ? ORDER BY feature", [sae_id]
    ).df()


# ---- page side ----------------------------------------------------------------------------------
Cursor = duckdb.DuckDBPyConnection


def has_geometry(cur: Cursor) -> bool:
    """Whether this atlas has geometry rows (older atlases lack the tables altogether)."""
    if not q.has_table(cur, "feature_geometry"):
        return False
    return cur.execute("SELECT count(*) > 0 FROM feature_geometry").fetchall()[0][0]


def geometry_saes(cur: Cursor) -> pd.DataFrame:
    """sae_id, layer, site, n, joint (has joint coordinates) for SAEs with geometry, by layer."""
    return cur.execute(
        "SELECT g.sae_id, s.layer, s.site, count(*) AS n, count(g.joint_x) > 0 AS joint "
        "FROM feature_geometry g JOIN saes s USING (sae_id) GROUP BY ALL ORDER BY s.layer, g.sae_id"
    ).df()


def lobe_ks(cur: Cursor) -> list[int]:
    return [int(r[0]) for r in cur.execute("SELECT DISTINCT k FROM lobes ORDER BY k").fetchall()]


def map_coordinates(cur: Cursor, sae_ids: list[str], joint: bool, k: int) -> pd.DataFrame:
    """Every point of a map layout: sae (index into `sae_ids`), feature, x, y (per-SAE or joint
    UMAP), lobe at k lobes (-1: none) and density. O(N) rows of six numbers, no text."""
    x, y = ("joint_x", "joint_y") if joint else ("umap_x", "umap_y")
    return frame(
        cur,
        f"SELECT (list_position($saes, g.sae_id) - 1)::SMALLINT AS sae, g.feature, "
        f"g.{x}::REAL AS x, g.{y}::REAL AS y, coalesce(fl.lobe, -1)::SMALLINT AS lobe, "
        "f.density FROM feature_geometry g "
        "JOIN features f ON f.sae_id = g.sae_id AND f.feature = g.feature "
        "LEFT JOIN feature_lobes fl ON fl.sae_id = g.sae_id AND fl.feature = g.feature AND fl.k = $k "
        f"WHERE list_contains($saes, g.sae_id) AND g.{x} IS NOT NULL",
        {"saes": list(sae_ids), "k": int(k)},
    )


def lobe_list(cur: Cursor, sae_id: str, k: int) -> pd.DataFrame:
    """The lobes of one SAE at k: lobe, size, n_windows_won, top_tokens, top_features."""
    return cur.execute(
        "SELECT lobe, size, n_windows_won, top_tokens, top_features FROM lobes "
        "WHERE sae_id = ? AND k = ? ORDER BY lobe",
        [sae_id, k],
    ).df()


def lobe_members(cur: Cursor, sae_id: str, k: int, lobe: int) -> list[tuple[str, int]]:
    rows = cur.execute(
        "SELECT sae_id, feature FROM feature_lobes WHERE sae_id = ? AND k = ? AND lobe = ? "
        "ORDER BY feature",
        [sae_id, k, lobe],
    ).fetchall()
    return [(str(s), int(f)) for s, f in rows]


def lobe_function(cur: Cursor, sae_id: str, k: int, facet: str) -> pd.DataFrame:
    """value, lobe, n_windows: windows won by each lobe, per value of a document facet."""
    return cur.execute(
        "SELECT value, lobe, n_windows FROM lobe_function "
        "WHERE sae_id = ? AND k = ? AND facet = ? ORDER BY value, lobe",
        [sae_id, k, facet],
    ).df()


def metrics(cur: Cursor) -> pd.DataFrame:
    """Every geometry statistic with its baseline (detail stays a JSON string)."""
    return cur.execute(
        "SELECT m.*, s.layer, s.site FROM geometry_metrics m JOIN saes s USING (sae_id) "
        "ORDER BY s.layer, m.sae_id, m.metric, m.k"
    ).df()


def spectra(cur: Cursor) -> pd.DataFrame:
    """sae_id, layer, site, rank, eigenvalue, gaussian for every SAE."""
    return cur.execute(
        "SELECT e.*, s.layer, s.site FROM eigen_spectrum e JOIN saes s USING (sae_id) "
        "ORDER BY s.layer, e.sae_id, e.rank"
    ).df()


def cooccurring(cur: Cursor, sae_id: str, feature: int) -> pd.DataFrame:
    """The stored top co-occurring features of one feature, with the partner's top tokens."""
    sql = (
        "SELECT rank, other, phi, jaccard, n11, other AS o FROM cooccurrence "
        "WHERE sae_id = $sae AND feature = $f"
    )
    params = {"sae": sae_id, "f": int(feature)}
    src = q.feature_source(cur)
    try:
        if src.denormalised:
            return rows_sql.with_info(cur, sql, params, src.ranks, ("top_tokens",))
        df = frame(cur, f"SELECT * EXCLUDE (o) FROM ({sql}) ORDER BY rank", params)
    except duckdb.CatalogException:  # a database without the geometry tables
        return pd.DataFrame(columns=["rank", "other", "phi", "jaccard", "n11", "top_tokens"])
    info = q.sae_feature_info(cur, sae_id, [int(o) for o in df["other"]], ("top_tokens",))
    tokens = dict(zip(info["feature"].astype(int), info["top_tokens"], strict=True))
    return df.assign(top_tokens=[tokens.get(int(o)) for o in df["other"]])
