"""Search indexes an atlas carries for the app, rebuilt every time an atlas is committed.

- `feature_rows` (a table in the atlas): one row per feature with every scalar column the
  Features table shows, joined once here instead of on every request, plus `search_text`, the
  lowercased top tokens and explanation that substring search scans. A page, a sort, a count or
  a text search then reads one table: O(F) columnar scan at worst, O(page) for the default view
  (F = features in the atlas). Writing it costs one O(F log F) join-and-sort at commit.
- `feature_cards` (core.store.feature_cards): everything one feature's page shows, in one row.
- the vector index beside the atlas (`core.store.vectors`): semantic search in O(log F).

The writer drops `feature_rows` when it opens an atlas (stages between open and commit see
the joined rows, never a stale copy) and `prepare` writes it again before the rename.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.store import feature_cards, feature_sql, flow_sql, vectors
from core.store import queries as q
from core.store.db import Cursor, ident
from core.store.feature_rows import ROW_KEY, SAE_SHIFT

FEATURE_ROWS = "feature_rows"
SEARCH_SEPARATOR = chr(31)
"""Between the top tokens and the explanation in search_text (no query can contain it)."""


def drop_feature_rows(con: Cursor) -> None:
    """Drop what commit derives from the other tables (feature_rows and the cards)."""
    feature_cards.drop(con)
    con.execute(f"DROP TABLE IF EXISTS {FEATURE_ROWS}")


def _search_text(columns: tuple[str, ...]) -> str:
    """SQL for `search_text` over a row `r` with these columns (explanation may be absent)."""
    tokens = "coalesce(array_to_string(r.top_tokens, ' '), '')"
    expl = "coalesce(r.explanation, '')" if "explanation" in columns else "''"
    return f"lower({tokens} || chr({ord(SEARCH_SEPARATOR)}) || {expl})"


def write_feature_rows(con: Cursor) -> int:
    """(Re)write `feature_rows` from the joined feature source, sorted by (sae_id, feature) so
    a point lookup prunes to one row group. Returns its row count."""
    drop_feature_rows(con)
    src = q.feature_source(con)  # the joined rows: feature_rows is gone
    # Stored uncompressed: a substring search decodes every search_text, and FSST decoding
    # doubled the scan (61 → 28 ms at 1M features). Everything else is checkpointed (with
    # compression) first, so the setting applies to this table alone.
    con.execute("CHECKPOINT")
    con.execute("SET force_compression = 'uncompressed'")
    try:
        con.execute(
            f"CREATE TABLE {FEATURE_ROWS} AS SELECT (dense_rank() OVER (ORDER BY r.sae_id) - 1) "
            f"* {SAE_SHIFT} + r.feature AS {ROW_KEY}, r.*, {_search_text(src.columns)} AS "
            f"search_text FROM ({src.sql}) r ORDER BY r.sae_id, r.feature"
        )
        con.execute(f"CREATE UNIQUE INDEX feature_rows_key ON {FEATURE_ROWS} ({ROW_KEY})")
        con.execute("CHECKPOINT")
    finally:
        con.execute("RESET force_compression")
    row = con.execute(f"SELECT count(*) FROM {ident(FEATURE_ROWS)}").fetchone()
    return int(row[0]) if row else 0


LOOKUP_TABLES: dict[str, str] = {
    "examples": "kind, bin, rank",
    "histograms": "",
    "logits": "sign, rank",
    "neighbours": "rank",
    "cooccurrence": "rank",
    "explanations": "explainer, model, prompt_version",
    "flow_classes": "",
    "feature_lobes": "k",
}
"""Tables the feature page reads by (sae_id, feature), with the rest of their sort order."""


def _clustered(con: Cursor, table: str) -> bool:
    """Whether rows of one SAE appear in non-decreasing feature order (then a lookup's zone
    maps prune to the row groups holding that feature). O(rows), two integer columns."""
    row = con.execute(
        f"SELECT count(*) FROM (SELECT sae_id, feature, lag(sae_id) OVER w AS ps, "
        f"lag(feature) OVER w AS pf FROM {ident(table)} WINDOW w AS (ORDER BY rowid)) "
        "WHERE ps = sae_id AND feature < pf"
    ).fetchone()
    return bool(row is not None and row[0] == 0)


def cluster_lookup_tables(con: Cursor) -> list[str]:
    """Sort each lookup table by (sae_id, feature, …) where it is not already: a feature page
    then reads one row group per table instead of a whole SAE's rows. Returns those sorted."""
    done = []
    for table, rest in LOOKUP_TABLES.items():
        if _clustered(con, table):
            continue
        order = "sae_id, feature" + (f", {rest}" if rest else "")
        t = ident(table)
        # rewritten in place in one transaction, so the table keeps its keys and constraints
        con.execute("BEGIN")
        con.execute(f"CREATE TEMP TABLE _sorted AS SELECT * FROM {t} ORDER BY {order}")
        con.execute(f"DELETE FROM {t}")
        con.execute(f"INSERT INTO {t} SELECT * FROM _sorted")
        con.execute("DROP TABLE _sorted")
        con.execute("COMMIT")
        done.append(table)
    return done


def prepare(con: Cursor, atlas: Path) -> dict[str, Any]:
    """Everything the app's search needs, written before the atlas is renamed into place:
    feature_rows in the database, the vector index in a temporary folder beside it."""
    n_rows = write_feature_rows(con)
    flow_sql.cluster_edges(con)
    feature_sql.fill_token_ids(con)
    clustered = cluster_lookup_tables(con)
    n_cards = feature_cards.write(con)
    detail = vectors.prepare(con, atlas)
    return {"feature_rows": n_rows, "clustered": clustered, "feature_cards": n_cards, **detail}


def publish(atlas: Path) -> None:
    """After the atlas is renamed into place: move its vector index into place too."""
    vectors.publish(atlas)
