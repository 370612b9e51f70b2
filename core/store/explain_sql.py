"""SQL of the explain stage, of `sae-atlas explain`'s feature selection and of explanation
search, one named function per query.

The stage works on the writer's connection with TEMP tables (never saved in the atlas):
  xdoc(doc_id, n_win, w0)            windows of each document; window id = w0 + pos // width
  xwin(win, doc_id, start)           every fixed, non-overlapping window of the corpus
  xfeat(feature)                     the features of one SAE being explained now
  xact(feature, win, act)            max activation of each feature in each window it fires in
  xsamp(feature, win, role, quantile, act)  activating samples ('train' | 'test')
(`win` is a window id; `window` is a reserved word in SQL.)
  xtok(doc_id, pos, tok, bi, tri)    the 1-, 2- and 3-gram ending at each corpus position
  xgram(n, g, cnt, s)                corpus counts and display strings of those n-grams
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from core.store.db import Cursor, frame, scalar
from core.store.runs import latest_run

EMBED_DIM = 384


# ---- windows and samples ---------------------------------------------------------------------
def define_windows(con: Cursor, width: int) -> int:
    """Create xdoc and xwin; return the number of windows."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE xdoc AS
        SELECT doc_id, n_win, (sum(n_win) OVER (ORDER BY doc_id) - n_win)::INTEGER AS w0
        FROM (SELECT doc_id, ((max(pos) + {width}) // {width})::INTEGER AS n_win
              FROM tokens GROUP BY doc_id)""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE xwin AS
        SELECT (w0 + k)::INTEGER AS win, doc_id, (k * {width})::INTEGER AS start
        FROM (SELECT doc_id, w0, unnest(range(n_win)) AS k FROM xdoc)""")
    return int(scalar(con, "SELECT count(*) FROM xwin"))


def drop_temp(con: Cursor) -> None:
    """Free the stage's temp tables (xact alone holds millions of rows)."""
    for table in ("xsamp", "xact", "xfeat", "xgram", "xtok", "xwin", "xdoc"):
        con.execute(f"DROP TABLE IF EXISTS {table}")


def set_features(con: Cursor, features: Sequence[int]) -> None:
    """xfeat := the features explained in this pass."""
    con.execute("CREATE OR REPLACE TEMP TABLE xfeat (feature INTEGER)")
    con.register("_xfeat", pd.DataFrame({"feature": np.asarray(features, dtype=np.int32)}))
    try:
        con.execute("INSERT INTO xfeat SELECT feature FROM _xfeat")
    finally:
        con.unregister("_xfeat")


def window_maxes(con: Cursor, sae_id: str, width: int) -> None:
    """xact := per (feature, win) the feature's max activation, for every feature of the SAE."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE xact AS
        SELECT a.feature, (d.w0 + a.pos // {width})::INTEGER AS win, max(a.act)::REAL AS act
        FROM activations a JOIN xdoc d USING (doc_id)
        WHERE a.sae_id = $sae GROUP BY ALL""",
        {"sae": sae_id},
    )


def sample_activating(con: Cursor, n_q: int, n_train: int, n_test: int, seed: int) -> None:
    """xsamp := n_train + n_test windows per feature spread over n_q equal-count quantiles
    of its windows ranked by max activation (quantile 0 = strongest), split train/test.

    Inside a quantile, windows are taken in the order of one corpus-wide random priority
    hash(win): a uniform draw for every feature, yet features share their picks, so far fewer
    distinct windows need an embedding. Picks go round-robin over the quantiles (so a feature
    with few windows still spans them all); inside each quantile, picks alternate train/test
    in the ratio n_train : n_test (40 : 50 over 10 quantiles gives exactly 4 and 5 each),
    shifted by the quantile so that one-window quantiles do not all go to the same side.
    """
    a, b = n_train, n_train + n_test
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE xsamp AS
        WITH r AS (
            SELECT feature, win, act,
                   row_number() OVER (PARTITION BY feature ORDER BY act DESC, win) - 1 AS rk,
                   count(*) OVER (PARTITION BY feature) AS n
            FROM xact),
        q AS (SELECT *, (rk * {n_q} // n)::INTEGER AS quantile FROM r),
        s AS (SELECT *, row_number() OVER (PARTITION BY feature, quantile
                                           ORDER BY hash(win, {seed}), win) - 1 AS i
              FROM q),
        t AS (SELECT *, row_number() OVER (PARTITION BY feature ORDER BY i, quantile) - 1 AS k
              FROM s),
        u AS (SELECT *, quantile + row_number() OVER (PARTITION BY feature, quantile
                                                      ORDER BY i) - 1 AS p
              FROM t WHERE k < {b})
        SELECT feature, win,
               CASE WHEN ((p + 1) * {a} + {b - 1}) // {b} > (p * {a} + {b - 1}) // {b}
                    THEN 'train' ELSE 'test' END AS role,
               quantile, act
        FROM u""")


def sample_random(con: Cursor, pool: int, n: int, seed: int) -> pd.DataFrame:
    """Per live feature of xfeat: n windows of the shared random pool where it never fires."""
    return frame(
        con,
        f"""
        WITH pool AS (SELECT win FROM xwin ORDER BY hash(win, {seed}), win LIMIT {pool}),
        live AS (SELECT DISTINCT feature FROM xact SEMI JOIN xfeat USING (feature)),
        c AS (SELECT l.feature, p.win FROM live l CROSS JOIN pool p
              ANTI JOIN xact a ON a.feature = l.feature AND a.win = p.win)
        SELECT feature, win, 'random' AS role, NULL::INTEGER AS quantile, 0::REAL AS act
        FROM c
        QUALIFY row_number() OVER (PARTITION BY feature
                                   ORDER BY hash(feature, win, {seed}), win) <= {n}""",
    )


def sample_hard(con: Cursor, sae_id: str, n_neighbours: int, n: int, seed: int) -> pd.DataFrame:
    """Per live feature of xfeat: n windows sampled for its neighbours where it never fires."""
    return frame(
        con,
        f"""
        WITH live AS (SELECT DISTINCT feature FROM xact SEMI JOIN xfeat USING (feature)),
        nb AS (SELECT n.feature, n.neighbour FROM neighbours n SEMI JOIN live USING (feature)
               WHERE n.sae_id = $sae AND n.rank <= {n_neighbours}),
        c AS (SELECT DISTINCT nb.feature, s.win FROM nb JOIN xsamp s ON s.feature = nb.neighbour
              ANTI JOIN xact a ON a.feature = nb.feature AND a.win = s.win)
        SELECT feature, win, 'hard' AS role, NULL::INTEGER AS quantile, 0::REAL AS act
        FROM c
        QUALIFY row_number() OVER (PARTITION BY feature
                                   ORDER BY hash(feature, win, {seed}), win) <= {n}""",
        {"sae": sae_id},
    )


def activating_samples(con: Cursor) -> pd.DataFrame:
    """The train/test rows of xsamp for the features of xfeat."""
    return frame(
        con,
        """
        SELECT feature, win, role, quantile, act FROM xsamp SEMI JOIN xfeat USING (feature)
        ORDER BY feature, role, quantile, win""",
    )


def window_texts(con: Cursor, width: int, windows: np.ndarray) -> pd.DataFrame:
    """(win, text): the window's tokens concatenated, for the given window ids."""
    con.register("_wanted", pd.DataFrame({"win": np.asarray(windows, dtype=np.int32)}))
    try:
        return frame(
            con,
            f"""
            SELECT (d.w0 + t.pos // {width})::INTEGER AS win,
                   string_agg(t.token_str, '' ORDER BY t.pos) AS text
            FROM tokens t JOIN xdoc d USING (doc_id)
            WHERE (d.w0 + t.pos // {width}) IN (SELECT win FROM _wanted)
            GROUP BY 1 ORDER BY 1""",
        )
    finally:
        con.unregister("_wanted")


def window_tokens(con: Cursor, sae_id: str, width: int, pairs: pd.DataFrame) -> pd.DataFrame:
    """(feature, win, tokens, acts) for the given (feature, win) pairs; acts are 0 where
    the feature does not fire."""
    con.register("_pairs", pairs[["feature", "win"]])
    try:
        return frame(
            con,
            f"""
            WITH t AS (SELECT (d.w0 + t.pos // {width})::INTEGER AS win, t.doc_id, t.pos,
                              t.token_str
                       FROM tokens t JOIN xdoc d USING (doc_id)
                       WHERE (d.w0 + t.pos // {width}) IN (SELECT win FROM _pairs)),
            a AS (SELECT feature, doc_id, pos, act FROM activations
                  WHERE sae_id = $sae AND feature IN (SELECT feature FROM _pairs))
            SELECT p.feature, p.win, list(t.token_str ORDER BY t.pos) AS tokens,
                   list(coalesce(a.act, 0)::REAL ORDER BY t.pos) AS acts
            FROM _pairs p JOIN t USING (win)
            LEFT JOIN a ON a.feature = p.feature AND a.doc_id = t.doc_id AND a.pos = t.pos
            GROUP BY p.feature, p.win""",
            {"sae": sae_id},
        )
    finally:
        con.unregister("_pairs")


# ---- statistics for the statistical explainer ------------------------------------------------
def define_grams(con: Cursor) -> None:
    """xtok and xgram: the n-grams (n = 1, 2, 3) ending at every corpus position."""
    v = int(scalar(con, "SELECT coalesce(max(token_id), 0) + 1 FROM tokens"))
    con.execute("""
        CREATE OR REPLACE TEMP TABLE _xtoks AS
        SELECT doc_id, pos, token_id::BIGINT AS tok, token_str AS s0,
               lag(token_id::BIGINT, 1) OVER w AS p1, lag(token_id::BIGINT, 2) OVER w AS p2,
               lag(token_str, 1) OVER w AS s1, lag(token_str, 2) OVER w AS s2
        FROM tokens WINDOW w AS (PARTITION BY doc_id ORDER BY pos)""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE xtok AS
        SELECT doc_id, pos, tok, p1 * {v} + tok AS bi, (p2 * {v} + p1) * {v} + tok AS tri
        FROM _xtoks""")
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE xgram AS
        SELECT 1 AS n, tok AS g, count(*) AS cnt, any_value(s0) AS s FROM _xtoks GROUP BY tok
        UNION ALL
        SELECT 2, p1 * $v + tok, count(*), any_value(s1 || s0) FROM _xtoks
        WHERE p1 IS NOT NULL GROUP BY 2
        UNION ALL
        SELECT 3, (p2 * $v + p1) * $v + tok, count(*), any_value(s2 || s1 || s0) FROM _xtoks
        WHERE p2 IS NOT NULL GROUP BY 2""",
        {"v": v},
    )
    con.execute("DROP TABLE _xtoks")


def gram_lifts(con: Cursor, sae_id: str, top: int) -> pd.DataFrame:
    """Per feature of xfeat and n: the `top` n-grams ending at its firing positions, ranked by
    share × ln(lift), lift = share among firing positions / share in the corpus (lift > 1,
    seen at least twice unless the feature fires once)."""
    return frame(
        con,
        f"""
        WITH f AS (SELECT a.feature, x.tok, x.bi, x.tri
                   FROM activations a JOIN xtok x USING (doc_id, pos)
                   WHERE a.sae_id = $sae AND a.feature IN (SELECT feature FROM xfeat)),
        nf AS (SELECT feature, count(*) AS n_fire FROM f GROUP BY feature),
        c AS (SELECT feature, 1 AS n, tok AS g, count(*) AS c FROM f GROUP BY ALL
              UNION ALL SELECT feature, 2, bi, count(*) FROM f WHERE bi IS NOT NULL GROUP BY ALL
              UNION ALL SELECT feature, 3, tri, count(*) FROM f WHERE tri IS NOT NULL GROUP BY ALL),
        tot AS (SELECT n, sum(cnt)::DOUBLE AS total FROM xgram GROUP BY n),
        s AS (SELECT c.feature, c.n, c.g, k.s, c.c, nf.n_fire,
                     (c.c / nf.n_fire) / (k.cnt / tot.total) AS lift
              FROM c JOIN nf USING (feature) JOIN xgram k ON k.n = c.n AND k.g = c.g
              JOIN tot ON tot.n = c.n
              WHERE c.c >= least(2, nf.n_fire))
        SELECT feature, n, g, s, c, n_fire, lift FROM s WHERE lift > 1
        QUALIFY row_number() OVER (PARTITION BY feature, n
                                   ORDER BY (c / n_fire) * ln(lift) DESC, g) <= {top}""",
        {"sae": sae_id},
    )


def doc_mix(con: Cursor, sae_id: str) -> pd.DataFrame:
    """(feature, language, source, topic, c): firing positions by document kind."""
    return frame(
        con,
        """
        SELECT a.feature, d.language, d.source, coalesce(d.topic, '') AS topic, count(*) AS c
        FROM activations a JOIN documents d USING (doc_id)
        WHERE a.sae_id = $sae AND a.feature IN (SELECT feature FROM xfeat)
        GROUP BY ALL""",
        {"sae": sae_id},
    )


def corpus_mix(con: Cursor) -> pd.DataFrame:
    """(language, source, topic, c): corpus tokens by document kind."""
    return frame(
        con,
        """
        SELECT d.language, d.source, coalesce(d.topic, '') AS topic, count(*) AS c
        FROM tokens t JOIN documents d USING (doc_id) GROUP BY ALL""",
    )


# ---- feature selection -----------------------------------------------------------------------
def sae_features(con: Cursor, sae_id: str) -> list[int]:
    rows = con.execute(
        "SELECT feature FROM features WHERE sae_id = ? ORDER BY feature", [sae_id]
    ).fetchall()
    return [int(r[0]) for r in rows]


def sae_ids(con: Cursor) -> list[str]:
    return [
        str(r[0]) for r in con.execute("SELECT DISTINCT sae_id FROM features ORDER BY 1").fetchall()
    ]


def top_by_density(con: Cursor, n: int, saes: Sequence[str]) -> pd.DataFrame:
    """(sae_id, feature): the n densest features of each given SAE."""
    return frame(
        con,
        """
        SELECT sae_id, feature FROM features WHERE list_contains($saes, sae_id)
        QUALIFY row_number() OVER (PARTITION BY sae_id ORDER BY density DESC, feature) <= $n""",
        {"saes": list(saes), "n": n},
    )


def feature_set_members(ws: Cursor, name: str) -> pd.DataFrame:
    """(sae_id, feature) of the feature set `name`, from a workspace connection."""
    return frame(
        ws,
        """
        SELECT DISTINCT m.sae_id, m.feature FROM set_members m
        JOIN feature_sets s USING (set_id) WHERE s.name = ?""",
        [name],
    )


def explained_features(
    con: Cursor, sae_id: str, explainer: str, model: str, version: str
) -> set[int]:
    """Features that already have a non-NULL explanation from this explainer/model/prompt."""
    rows = con.execute(
        """
        SELECT feature FROM explanations
        WHERE sae_id = ? AND explainer = ? AND model = ? AND prompt_version = ?
          AND explanation IS NOT NULL""",
        [sae_id, explainer, model, version],
    ).fetchall()
    return {int(r[0]) for r in rows}


def current_run(con: Cursor) -> str | None:
    """The id of the run the atlas was built by (explanations are tied to its activations)."""
    run = latest_run(con)
    return run.run_id if run else None


def drop_stale(con: Cursor, run_id: str | None, saes: Sequence[str]) -> int:
    """Delete explanations made from another run's activations or of SAEs no longer built."""
    n = scalar(
        con,
        """
        DELETE FROM explanations
        WHERE run_id IS DISTINCT FROM $run OR NOT list_contains($saes, sae_id)""",
        {"run": run_id, "saes": list(saes)},
    )
    return int(n) if n is not None else 0


EXPLANATION_KEY = "sae_id = ? AND explainer = ? AND model = ? AND prompt_version = ? AND list_contains(?, feature)"
"""WHERE clause for AtlasWriter.replace_rows: one explainer's rows for a list of features."""


# ---- reading explanations (app and summaries) ------------------------------------------------
def auroc_values(
    con: Cursor, sae_id: str, explainer: str, model: str, version: str
) -> pd.DataFrame:
    """(embedding_auroc, embedding_auroc_hard) of one explainer's scored features of an SAE."""
    return frame(
        con,
        """
        SELECT embedding_auroc, embedding_auroc_hard FROM explanations
        WHERE sae_id = $sae AND explainer = $e AND model = $m AND prompt_version = $v
          AND embedding_auroc IS NOT NULL""",
        {"sae": sae_id, "e": explainer, "m": model, "v": version},
    )


def feature_explanations(cur: Cursor, sae_id: str, feature: int) -> pd.DataFrame:
    """Every explanation of one feature with its scores, best first (NULL ones last)."""
    return frame(
        cur,
        """
        SELECT explainer, model, prompt_version, created, explanation, error, embedding_auroc,
               embedding_auroc_hard, detection, fuzzing, simulation, scorer_model
        FROM explanations WHERE sae_id = $sae AND feature = $f
        ORDER BY explanation IS NULL, coalesce(detection, embedding_auroc) DESC NULLS LAST,
                 created DESC""",
        {"sae": sae_id, "f": int(feature)},
    )


def semantic_search(
    cur: Cursor,
    query_embedding: np.ndarray | Sequence[float],
    k: int = 20,
    sae_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Features whose explanation is nearest in meaning to the query embedding (384,),
    one row per feature (its best-matching explanation), by cosine similarity."""
    q = np.asarray(query_embedding, dtype=np.float32).reshape(-1)
    if q.shape[0] != EMBED_DIM:
        raise ValueError(f"query embedding must have {EMBED_DIM} values, got {q.shape[0]}")
    return frame(
        cur,
        f"""
        SELECT sae_id, feature, explanation, explainer, embedding_auroc,
               array_cosine_similarity(embedding, $q::FLOAT[{EMBED_DIM}]) AS similarity
        FROM explanations
        WHERE embedding IS NOT NULL AND ($all OR list_contains($saes, sae_id))
        QUALIFY row_number() OVER (PARTITION BY sae_id, feature ORDER BY similarity DESC) = 1
        ORDER BY similarity DESC, sae_id, feature LIMIT $k""",
        {"q": q.tolist(), "all": sae_ids is None, "saes": list(sae_ids or []), "k": int(k)},
    )
