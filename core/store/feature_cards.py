"""`feature_cards`: one row per feature holding everything its page shows, written at commit.

A feature page reads eleven things by (sae_id, feature): its row, examples, histogram, logits,
decoder neighbours, explanations, co-occurring features, flow class, predecessors, successors
(and its SAE, memoised). Read from their own tables, each is a zone-map scan of one row group,
2–12 ms apiece: 64 ms p50 at 1M features. A card holds them all as list columns under
`row_key` (core.store.feature_rows) with a unique ART index, so a page is one probe, O(log F)
plus the card's size: 12 ms p50 / 20 ms p95 at 1M features on 2 cores (`app.benchmark`).

Cost at commit: one pass over each lookup table, one SAE at a time (its rows are contiguous:
core.store.search_index clusters them), so O(F + R) time and O((F + R) / n_sae) working memory
(F = features, R = rows of the lookup tables); 3.4 min at 1M features on 2 cores. On disk the
page's rows are stored a second time (+1.8 GB on the 3.5 GB atlas at 1M features): the
normalised tables stay, because the pipeline, the flow graphs and exports read them. An atlas
committed before cards existed is read from those tables (`core.store.feature_sql`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa

from core.store import queries as q
from core.store.db import Cursor, ident
from core.store.feature_rows import ROW_KEY, SAE_SHIFT, sae_ranks

FEATURE_CARDS = "feature_cards"
ROWS = q.FEATURE_ROWS


def _struct(columns: str, alias: str = "") -> str:
    """`{'a': t.a, 'b': o.b}` for ('a, o.b', 't'): a DuckDB struct literal of a row's columns,
    each named by its column (`alias` qualifies the unqualified ones)."""
    items = [c.strip() for c in columns.split(",")]
    pre = f"{alias}." if alias else ""
    return (
        "{" + ", ".join(f"'{c.split('.')[-1]}': {c if '.' in c else pre + c}" for c in items) + "}"
    )


_EXAMPLE_COLS = "kind, rank, bin, doc_id, pos, act, center, tokens, acts, token_ids"
_EDGE_COLS = "src_sae, src_feature, dst_sae, dst_feature, kind, direction, rank, cosine"
_EXPLANATION_COLS = (
    "explainer, model, prompt_version, created, explanation, error, embedding_auroc, "
    "embedding_auroc_hard, detection, fuzzing, simulation, scorer_model"
)
# One SAE's cards: each panel aggregated per feature over that SAE's rows, in the order and
# with the columns the per-table queries of the page return ($s = the SAE, $base = its keys).
_CARDS = f"""
WITH
ex AS (SELECT e.feature, list({_struct(_EXAMPLE_COLS + ", d.source, d.topic, d.title", "e")}
           ORDER BY e.kind = 'interval', e.bin DESC NULLS FIRST, e.rank) AS examples
       FROM examples e LEFT JOIN documents d USING (doc_id) WHERE e.sae_id = $s GROUP BY ALL),
lg AS (SELECT feature, list({_struct("sign, rank, token_id, token_str, value")}
           ORDER BY sign DESC, rank) AS logits
       FROM logits WHERE sae_id = $s GROUP BY ALL),
nb AS (SELECT n.feature, list({_struct("rank, neighbour, cosine, o.density, o.max_act, o.top_tokens", "n")}
           ORDER BY n.rank) AS neighbours
       FROM neighbours n LEFT JOIN {ROWS} o ON o.{ROW_KEY} = $base + n.neighbour
       WHERE n.sae_id = $s GROUP BY ALL),
co AS (SELECT c.feature, list({_struct("rank, other, phi, jaccard, n11, o.top_tokens", "c")}
           ORDER BY c.rank) AS cooccurring
       FROM cooccurrence c LEFT JOIN {ROWS} o ON o.{ROW_KEY} = $base + c.other
       WHERE c.sae_id = $s GROUP BY ALL),
xp AS (SELECT feature, list({_struct(_EXPLANATION_COLS)} ORDER BY explanation IS NULL,
           coalesce(detection, embedding_auroc) DESC NULLS LAST, created DESC) AS explanations
       FROM explanations WHERE sae_id = $s GROUP BY ALL),
pr AS (SELECT dst_feature AS feature, list({_struct(_EDGE_COLS)} ORDER BY kind, rank) AS edges
       FROM flow_edges WHERE direction = 'back' AND dst_sae = $s GROUP BY ALL),
su AS (SELECT src_feature AS feature, list({_struct(_EDGE_COLS)} ORDER BY kind, rank) AS edges
       FROM flow_edges WHERE direction = 'fwd' AND src_sae = $s GROUP BY ALL)
SELECT x.* EXCLUDE ({q.SEARCH_COLUMN}), h.edges AS histogram_edges, h.counts AS histogram_counts,
       ex.examples, lg.logits, nb.neighbours, co.cooccurring, xp.explanations,
       CASE WHEN fc.feature IS NOT NULL THEN fc END AS flow, pr.edges AS predecessors,
       su.edges AS successors
FROM {ROWS} x
LEFT JOIN histograms h ON h.sae_id = $s AND h.feature = x.feature
LEFT JOIN flow_classes fc ON fc.sae_id = $s AND fc.feature = x.feature
{" ".join(f"LEFT JOIN {t} ON {t}.feature = x.feature" for t in ("ex", "lg", "nb", "co", "xp", "pr", "su"))}
WHERE x.{ROW_KEY} BETWEEN $base AND $base + {SAE_SHIFT - 1}
ORDER BY x.{ROW_KEY}
"""


def drop(con: Cursor) -> None:
    con.execute(f"DROP TABLE IF EXISTS {FEATURE_CARDS}")


def write(con: Cursor) -> int:
    """(Re)write every feature's card from feature_rows and the (clustered) lookup tables, one
    SAE at a time in key order, then index it. Returns the number of cards."""
    drop(con)
    ranks = sorted(sae_ranks(con, ROWS), key=lambda r: r[1])
    t = ident(FEATURE_CARDS)
    con.execute(f"CREATE TABLE {t} AS SELECT * FROM ({_CARDS}) LIMIT 0", {"s": "", "base": -1})
    for sae_id, rank in ranks:
        con.execute(f"INSERT INTO {t} {_CARDS}", {"s": sae_id, "base": rank * SAE_SHIFT})
    con.execute(f"CREATE UNIQUE INDEX feature_cards_key ON {t} ({ROW_KEY})")
    row = con.execute(f"SELECT count(*) FROM {t}").fetchone()
    return int(row[0]) if row else 0


# ---- reading -----------------------------------------------------------------------------------
PANELS = (
    "examples",
    "logits",
    "neighbours",
    "cooccurring",
    "explanations",
    "predecessors",
    "successors",
)
"""List-of-struct columns, each read back as the DataFrame its own query would return."""
_NOT_ROW = {ROW_KEY, "histogram_edges", "histogram_counts", "flow", *PANELS}
_RANKS: dict[tuple[str, int], dict[str, int] | None] = {}


def card_ranks(cur: Cursor) -> dict[str, int] | None:
    """{sae_id: rank} of the atlas's cards, or None without them; memoised per read-only file."""
    atlas = q.atlas_identity(cur)
    if atlas is not None and atlas in _RANKS:
        return _RANKS[atlas]
    ranks = dict(sae_ranks(cur, FEATURE_CARDS)) if q.has_table(cur, FEATURE_CARDS) else None
    if atlas is not None:
        _RANKS[atlas] = ranks
    return ranks


def _frame(structs: pa.StructArray) -> pd.DataFrame:
    """Rows of a struct array as a DataFrame, a numpy column per field (faster than
    Table.to_pandas, and NULL strings come back as None as DuckDB's own .df() gives them)."""
    fields = [structs.type.field(i).name for i in range(structs.type.num_fields)]
    cols = {f: structs.field(i).to_numpy(zero_copy_only=False) for i, f in enumerate(fields)}
    return pd.DataFrame(cols, columns=fields)


def _panel(card: pa.Table, name: str) -> pd.DataFrame:
    """One row's list-of-struct cell as a DataFrame (a NULL list: no rows, same columns)."""
    cell = card.column(name).combine_chunks()
    assert isinstance(cell, pa.ListArray)
    return _frame(cell.flatten())


def _histogram(card: pa.Table) -> dict[str, list[float]] | None:
    edges, counts = card.column("histogram_edges")[0], card.column("histogram_counts")[0]
    if not edges.is_valid:
        return None
    return {
        "edges": [float(v) for v in edges.as_py()],
        "counts": [float(v) for v in counts.as_py()],
    }


def read(cur: Cursor, ranks: dict[str, int], sae_id: str, feature: int) -> dict[str, Any] | None:
    """The card of one feature as the page's parts (see feature_sql.feature_page), or None
    when the SAE or the feature is unknown. One index probe; `ranks` from card_ranks."""
    if sae_id not in ranks:
        return None
    sql = f"SELECT * FROM {ident(FEATURE_CARDS)} WHERE {ROW_KEY} = ?"
    card = cur.sql(sql, params=[ranks[sae_id] * SAE_SHIFT + int(feature)]).to_arrow_table()
    if card.num_rows == 0:
        return None
    row = card.select([c for c in card.column_names if c not in _NOT_ROW]).to_pylist()[0]
    flow = card.column("flow").combine_chunks()
    assert isinstance(flow, pa.StructArray)
    return {
        "row": {k: q.plain(v) for k, v in row.items()},
        **{p: _panel(card, p) for p in PANELS},
        "histogram": _histogram(card),
        "flow_class": _frame(flow if flow.null_count == 0 else flow.slice(0, 0)),
    }
