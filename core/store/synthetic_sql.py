"""SQL of the synthetic-atlas generator (core/synthetic): bulk appends of generated frames and
the per-SAE summaries it derives in DuckDB (lobes, lobe_function), as named functions.

Frames are Arrow tables or pandas frames without the columns every row of one call shares
(sae_id, run ids, constants): `append` adds those as parameters, so nothing is repeated W
times in Python.
"""

from __future__ import annotations

from typing import Any

from core.store.db import Cursor, frame, ident

_FRAME = "_synthetic_frame"


def append(cur: Cursor, table: str, data: Any, consts: dict[str, Any] | None = None) -> None:
    """INSERT the frame's rows BY NAME, with `consts` ({column: value}) added to every row;
    columns neither gives stay NULL. `table` and the column names come from code."""
    consts = consts or {}
    extra = "".join(f"$c{i} AS {ident(c)}, " for i, c in enumerate(consts))
    cur.register(_FRAME, data)
    try:
        cur.execute(
            f"INSERT INTO {ident(table)} BY NAME SELECT {extra}* FROM {_FRAME}",
            {f"c{i}": v for i, v in enumerate(consts.values())},
        )
    finally:
        cur.unregister(_FRAME)


# Per (k, lobe) of one SAE: its size, hubs (the most-firing members), their first top tokens, and
# windows won (a share of its members' windows). Dead features (lobe -1) are not a lobe.
_LOBES = """
INSERT INTO lobes BY NAME
SELECT $sae AS sae_id, l.k, l.lobe, count(*)::INTEGER AS size,
       list(f.top_tokens[1] ORDER BY f.n_fire DESC, l.feature)[1:5] AS top_tokens,
       list(l.feature ORDER BY f.n_fire DESC, l.feature)[1:5] AS top_features,
       (sum(g.n_windows) // 4)::BIGINT AS n_windows_won
FROM feature_lobes l
JOIN features f ON f.sae_id = l.sae_id AND f.feature = l.feature
JOIN feature_geometry g ON g.sae_id = l.sae_id AND g.feature = l.feature
WHERE l.sae_id = $sae AND l.lobe >= 0
GROUP BY l.k, l.lobe
"""

# Windows won per (k, facet value, lobe): a hashed count for most pairs (some lobes win nothing
# in some facets); values are those of the documents.
_LOBE_FUNCTION = """
INSERT INTO lobe_function BY NAME
SELECT $sae AS sae_id, l.k, f.facet, f.value, l.lobe,
       (1 + hash(l.k, l.lobe, f.value, $seed) % 200)::BIGINT AS n_windows
FROM lobes l CROSS JOIN (
    SELECT DISTINCT 'source' AS facet, coalesce(source, '(none)') AS value FROM documents
    UNION SELECT DISTINCT 'topic', coalesce(topic, '(none)') FROM documents
    UNION SELECT DISTINCT 'language', coalesce(language, '(none)') FROM documents
) f
WHERE l.sae_id = $sae AND hash(l.lobe, f.value, $seed) % 4 <> 0
"""


def derive_lobes(cur: Cursor, sae_id: str, seed: int) -> None:
    """lobes and lobe_function rows of one SAE from its feature_lobes, features and
    feature_geometry rows. O(W · len(k)) aggregation."""
    cur.execute(_LOBES, {"sae": sae_id})
    cur.execute(_LOBE_FUNCTION, {"sae": sae_id, "seed": seed})


def table_counts(cur: Cursor, tables: list[str]) -> dict[str, int]:
    """{table: row count} (`tables` come from the schema)."""
    if not tables:
        return {}
    sql = " UNION ALL ".join(
        f"SELECT '{t}' AS t, count(*) AS n FROM {ident(t)}" for t in tables if t.isidentifier()
    )
    return {str(t): int(n) for t, n in frame(cur, sql).itertuples(index=False)}


def database_size(cur: Cursor) -> dict[str, Any]:
    """DuckDB's own account of the open database file (blocks, sizes)."""
    return {str(k): v for k, v in frame(cur, "PRAGMA database_size").iloc[0].items()}
