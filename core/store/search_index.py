"""Search indexes an atlas carries for the app, rebuilt every time an atlas is committed.

- `feature_rows` (a table in the atlas): one row per feature with every scalar column the
  Features table shows, joined once here instead of on every request, plus `search_text`, the
  lowercased top tokens and explanation that substring search scans. A page, a sort, a count or
  a text search then reads one table: O(F) columnar scan at worst, O(page) for the default view
  (F = features in the atlas). Writing it costs one O(F log F) join-and-sort at commit.
- the vector index beside the atlas (`core.store.vectors`): semantic search in O(log F).

The writer drops `feature_rows` when it opens an atlas (stages between open and commit see
the joined rows, never a stale copy) and `prepare` writes it again before the rename.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.store import queries as q
from core.store import vectors
from core.store.db import Cursor, ident

FEATURE_ROWS = "feature_rows"
SEARCH_SEPARATOR = chr(31)
"""Between the top tokens and the explanation in search_text (no query can contain it)."""


def drop_feature_rows(con: Cursor) -> None:
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
    con.execute(
        f"CREATE TABLE {FEATURE_ROWS} AS SELECT r.*, {_search_text(src.columns)} AS search_text "
        f"FROM ({src.sql}) r ORDER BY r.sae_id, r.feature"
    )
    row = con.execute(f"SELECT count(*) FROM {ident(FEATURE_ROWS)}").fetchone()
    return int(row[0]) if row else 0


def prepare(con: Cursor, atlas: Path) -> dict[str, Any]:
    """Everything the app's search needs, written before the atlas is renamed into place:
    feature_rows in the database, the vector index in a temporary folder beside it."""
    n_rows = write_feature_rows(con)
    detail = vectors.prepare(con, atlas)
    return {"feature_rows": n_rows, **detail}


def publish(atlas: Path) -> None:
    """After the atlas is renamed into place: move its vector index into place too."""
    vectors.publish(atlas)
