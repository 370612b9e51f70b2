"""Feature rows: the Features table, search, sort and export, as named functions over a cursor
(`?` / `$name` parameters only). One feature's page is in `feature_sql`, the atlas as a whole in
`overview_sql`.

Feature rows come from one place, `feature_source`: the `features` table joined with its SAE
(`layer`, `site`) and with the chosen columns of whichever optional per-feature tables later
stages have written (`OPTIONAL_FEATURE_TABLES`: one row per (sae_id, feature) joined). The table,
the feature page and the CSV export all read through it, so a new stage's columns (an
explanation, scores, a lobe, UMAP coordinates, a flow class) appear everywhere at once.

Identifiers spliced into SQL are never user text: they come from `information_schema` or the
constants here and are double-quoted; sorting accepts only a column of the feature rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pandas as pd

from core.store import feature_rows as rows_sql
from core.store.db import Cursor, first, frame, ident


@dataclass(frozen=True)
class OptionalTable:
    """A per-feature table a later stage writes; joined onto feature rows when it exists."""

    name: str
    columns: tuple[str, ...]
    """Columns to join (those the table lacks are skipped; arrays never join)."""
    pick: str | None = None
    """ORDER BY choosing one row per (sae_id, feature) when the table can hold several."""


OPTIONAL_FEATURE_TABLES: tuple[OptionalTable, ...] = (
    OptionalTable(
        "explanations",
        ("explanation", "explainer", "detection", "fuzzing", "simulation", "embedding_auroc"),
        pick="explanation IS NULL, created DESC NULLS LAST, explainer, model, prompt_version",
    ),
    OptionalTable("feature_geometry", ("lobe", "umap_x", "umap_y")),
    OptionalTable("flow_classes", ("flow_class",)),
)

SEARCH_TEXT_COLUMNS: tuple[str, ...] = ("explanation",)
"""Text columns searched (ILIKE) besides the top tokens, where they exist."""

FEATURE_ROWS = "feature_rows"
SEARCH_COLUMN = "search_text"
"""feature_rows' lowercased top tokens + explanation (core.store.search_index writes both)."""

_KEYS = ("sae_id", "feature")
_BASE = ("sae_id", "feature", "layer", "site")


def _is_scalar(data_type: str) -> bool:
    """Lists, arrays, structs and maps stay out of the joined feature rows (e.g. embeddings)."""
    t = data_type.upper()
    return not (t.endswith("]") or t.startswith(("STRUCT", "MAP", "UNION")))


def schema_columns(cur: Cursor, tables: list[str]) -> dict[str, list[tuple[str, str]]]:
    """{table: [(column, type), ...]} for those of `tables` that exist in the atlas."""
    rows = cur.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'main' AND list_contains(?, table_name) "
        "ORDER BY table_name, ordinal_position",
        [tables],
    ).fetchall()
    out: dict[str, list[tuple[str, str]]] = {}
    for table, col, dtype in rows:
        out.setdefault(str(table), []).append((str(col), str(dtype)))
    return out


def has_table(cur: Cursor, table: str) -> bool:
    return table in schema_columns(cur, [table])


# ---- feature rows ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Join:
    table: str
    alias: str
    pick: str | None
    """ORDER BY keeping one row per feature; None where the table has one row per feature."""


@dataclass(frozen=True)
class FeatureSource:
    """How to select feature rows: features ⋈ saes (layer, site) ⟕ optional per-feature tables."""

    select: tuple[str, ...]
    joins: tuple[Join, ...]
    columns: tuple[str, ...]
    sortable: tuple[str, ...]
    text_columns: tuple[tuple[str, str], ...]
    """(table, column) of text searched beyond the top tokens (any row of the table matches)."""
    base_columns: tuple[str, ...]
    """Columns of `table` itself: filtering / sorting on these needs no join."""
    table: str = "features"
    """`features`, or the atlas's precomputed `feature_rows` (every column, no joins)."""
    ranks: tuple[tuple[str, int], ...] = ()
    """feature_rows only: (sae_id, rank) of its row keys (core.store.feature_rows)."""

    @property
    def denormalised(self) -> bool:
        return self.table != "features"

    @property
    def sql(self) -> str:
        """All feature rows."""
        return self.over(None)

    def over(self, base: str | None, prune: str = "TRUE") -> str:
        """Feature rows of `base` (a subquery of whole `features` rows; None = all of them).

        With a base, it is computed once and the optional tables are cut down to its keys
        (and to `prune`, a condition on x.sae_id / x.feature that zone maps can use) before
        joining, so a page of 50 rows never hashes a million-row table.
        """
        head = "" if base is None else f"WITH b AS MATERIALIZED ({base}) "
        joins = []
        for j in self.joins:
            rows = ident(j.table)
            if base is not None:
                rows = (
                    f"(SELECT x.* FROM {rows} x SEMI JOIN b USING (sae_id, feature) WHERE {prune})"
                )
            if j.pick:
                rows = (
                    f"(SELECT * FROM {rows} QUALIFY row_number() OVER "
                    f"(PARTITION BY sae_id, feature ORDER BY {j.pick}) = 1)"
                )
            joins.append(
                f"LEFT JOIN {rows} {j.alias} ON {j.alias}.sae_id = f.sae_id "
                f"AND {j.alias}.feature = f.feature"
            )
        rel = ident(self.table) if base is None else "b"
        saes = "" if self.denormalised else "JOIN saes s ON s.sae_id = f.sae_id "
        return f"{head}SELECT {', '.join(self.select)} FROM {rel} f {saes}{' '.join(joins)}"


_SOURCES: dict[tuple[str, int], FeatureSource] = {}


def atlas_identity(cur: Cursor) -> tuple[str, int] | None:
    """(path, mtime) of a read-only atlas file (what may be memoised for it), else None."""
    row = first(
        cur,
        "SELECT path, readonly FROM duckdb_databases() WHERE database_name = current_database()",
    )
    if row and row[1] and row[0] and os.path.exists(str(row[0])):
        return (str(row[0]), os.stat(str(row[0])).st_mtime_ns)
    return None


def feature_source(cur: Cursor) -> FeatureSource:
    """The feature rows (see FeatureSource); memoised per read-only atlas file and mtime."""
    key = atlas_identity(cur)
    if key is not None and key in _SOURCES:
        return _SOURCES[key]
    src = _build_source(cur)
    if key is not None:
        _SOURCES[key] = src
    return src


def _unique_keys(cur: Cursor, table: str) -> bool:
    """Whether a table holds at most one row per (sae_id, feature) (one scan, memoised above)."""
    dup = f"SELECT 1 FROM {ident(table)} GROUP BY sae_id, feature HAVING count(*) > 1 LIMIT 1"
    return first(cur, dup) is None


def _denormalised_source(cur: Cursor, columns: list[tuple[str, str]]) -> FeatureSource:
    """Feature rows read straight from `feature_rows` (see core.store.search_index)."""
    cols = [(c, t) for c, t in columns if c not in (SEARCH_COLUMN, rows_sql.ROW_KEY)]
    names = tuple(c for c, _ in cols)
    return FeatureSource(
        select=tuple(f"f.{ident(c)}" for c in names),
        joins=(),
        columns=names,
        sortable=tuple(c for c, t in cols if _is_scalar(t)),
        text_columns=(),
        base_columns=names,
        table=FEATURE_ROWS,
        ranks=rows_sql.sae_ranks(cur, FEATURE_ROWS),
    )


def _build_source(cur: Cursor) -> FeatureSource:
    rows = schema_columns(cur, [FEATURE_ROWS]).get(FEATURE_ROWS, [])
    if {SEARCH_COLUMN, rows_sql.ROW_KEY} <= {c for c, _ in rows}:
        return _denormalised_source(cur, rows)
    tables = schema_columns(cur, ["features"] + [o.name for o in OPTIONAL_FEATURE_TABLES])
    feat_cols = [(c, t) for c, t in tables.get("features", []) if c not in _KEYS]
    select = ["f.sae_id", "f.feature", "s.layer", "s.site"] + [
        f"f.{ident(c)}" for c, _ in feat_cols
    ]
    columns = list(_BASE) + [c for c, _ in feat_cols]
    scalar = set(_BASE) | {c for c, t in feat_cols if _is_scalar(t)}
    joins = []
    for i, opt in enumerate(OPTIONAL_FEATURE_TABLES):
        types = dict(tables.get(opt.name, []))
        if not set(_KEYS) <= set(types):
            continue
        extra = [c for c in opt.columns if c in types and c not in columns and _is_scalar(types[c])]
        pick = opt.pick if opt.pick and not _unique_keys(cur, opt.name) else None
        joins.append(Join(opt.name, f"x{i}", pick))
        select += [f"x{i}.{ident(c)}" for c in extra]
        columns += extra
        scalar |= set(extra)
    return FeatureSource(
        select=tuple(select),
        joins=tuple(joins),
        columns=tuple(columns),
        sortable=tuple(c for c in columns if c in scalar),
        text_columns=tuple(
            (o.name, c)
            for o in OPTIONAL_FEATURE_TABLES
            for c in SEARCH_TEXT_COLUMNS
            if c in o.columns and c in dict(tables.get(o.name, []))
        ),
        base_columns=tuple(["sae_id", "feature"] + [c for c, _ in feat_cols]),
    )


@dataclass(frozen=True)
class FeatureFilter:
    """What the Features table is filtered by; None / empty means no constraint."""

    text: str = ""
    sae_ids: tuple[str, ...] = ()
    density_range: tuple[float, float] | None = None
    min_max_act: float | None = None


def like_pattern(text: str) -> str:
    """Substring pattern for ILIKE … ESCAPE '\\' (the user's % and _ match literally)."""
    esc = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{esc}%"


def _where(src: FeatureSource, flt: FeatureFilter) -> tuple[str, dict[str, Any]]:
    conds: list[str] = []
    params: dict[str, Any] = {}
    if flt.text.strip() and src.denormalised:
        params["needle"] = flt.text.strip().lower()
        conds.append(f"contains(r.{SEARCH_COLUMN}, $needle)")
    elif flt.text.strip():
        params["pattern"] = like_pattern(flt.text.strip())
        ors = ["array_to_string(r.top_tokens, ' ') ILIKE $pattern ESCAPE '\\'"]
        ors += [
            f"EXISTS (SELECT 1 FROM {ident(t)} x WHERE x.sae_id = r.sae_id AND "
            f"x.feature = r.feature AND x.{ident(c)} ILIKE $pattern ESCAPE '\\')"
            for t, c in src.text_columns
        ]
        conds.append("(" + " OR ".join(ors) + ")")
    if flt.sae_ids:
        params["sae_ids"] = list(flt.sae_ids)
        conds.append("list_contains($sae_ids, r.sae_id)")
    if flt.density_range is not None:
        params["dmin"], params["dmax"] = (float(v) for v in flt.density_range)
        conds.append("r.density BETWEEN $dmin AND $dmax")
    if flt.min_max_act is not None:
        params["min_max_act"] = float(flt.min_max_act)
        conds.append("r.max_act >= $min_max_act")
    return ("WHERE " + " AND ".join(conds)) if conds else "", params


def _order_by(src: FeatureSource, sort: str, desc: bool) -> str:
    if sort not in src.sortable:
        raise ValueError(f"cannot sort by {sort!r}; sortable columns: {', '.join(src.sortable)}")
    # a total order, so that pages never overlap or skip rows: ties broken by the key
    tie = "".join(f", r.{k}" for k in _KEYS if k != sort)
    return f"ORDER BY r.{ident(sort)} {'DESC' if desc else 'ASC'} NULLS LAST{tie}"


def search_features(
    cur: Cursor,
    flt: FeatureFilter = FeatureFilter(),
    *,
    sort: str = "density",
    desc: bool = True,
    limit: int = 50,
    offset: int = 0,
) -> pd.DataFrame:
    """One page of feature rows matching `flt`, sorted by a whitelisted column."""
    src = feature_source(cur)
    where, params = _where(src, flt)
    params |= {"limit": max(0, int(limit)), "offset": max(0, int(offset))}
    order = _order_by(src, sort, desc)
    if not _features_only(src, sort):
        sql = f"SELECT * FROM ({src.sql}) r {where} {order} LIMIT $limit OFFSET $offset"
        return frame(cur, sql, params)
    # Late materialisation: page through `features` alone, then fetch only that page's rows.
    if src.denormalised:
        cols = ", ".join(f"r.{ident(c)}" for c in src.columns)
        sql = f"SELECT {cols} FROM {ident(src.table)} r {where} {order} LIMIT $limit OFFSET $offset"
        return frame(cur, sql, params)
    page = f"SELECT r.sae_id, r.feature FROM features r {where} {order} LIMIT $limit OFFSET $offset"
    keys = [(str(a), int(b)) for a, b in cur.execute(page, params).fetchall()]
    return features_for_export(cur, keys)


def count_features(cur: Cursor, flt: FeatureFilter = FeatureFilter()) -> int:
    src = feature_source(cur)
    where, params = _where(src, flt)
    row = first(cur, f"SELECT count(*) FROM {ident(src.table)} r {where}", params)
    return int(row[0]) if row else 0


def page_with_count(
    cur: Cursor, flt: FeatureFilter, sort: str, desc: bool, limit: int, offset: int
) -> tuple[pd.DataFrame, int]:
    """(one page of rows, how many match). With a text search over feature_rows, one scan of
    its search text gives both (rows_sql.page_and_count); otherwise two cheap queries."""
    src = feature_source(cur)
    if not (src.denormalised and flt.text.strip()):
        rows = search_features(cur, flt, sort=sort, desc=desc, limit=limit, offset=offset)
        return rows, count_features(cur, flt)
    _order_by(src, sort, desc)  # rejects an unknown sort column
    where, params = _where(src, flt)
    query = (where, params, sort, desc)
    return rows_sql.page_and_count(cur, src.table, src.columns, src.ranks, query, limit, offset)


def _features_only(src: FeatureSource, sort: str) -> bool:
    """Whether sorting needs only the `features` table (filters always do: see _where)."""
    return sort in src.base_columns


def feature_row(cur: Cursor, sae_id: str, feature: int) -> dict[str, Any] | None:
    """One feature's row (all joined columns), or None when (sae_id, feature) is unknown."""
    df = features_for_export(cur, [(sae_id, feature)])
    return records(df)[0] if len(df) else None


def features_for_export(cur: Cursor, keys: list[tuple[str, int]]) -> pd.DataFrame:
    """Feature rows for (sae_id, feature) keys, in the order given; unknown keys are skipped."""
    src = feature_source(cur)
    if not keys:
        return pd.DataFrame(columns=list(src.columns))
    if src.denormalised:  # one index probe per key
        return rows_sql.by_keys(cur, src.table, src.columns, src.ranks, keys)
    saes = sorted({str(s) for s, _ in keys})
    feats = [int(f) for _, f in keys]
    params: dict[str, Any] = {"saes": [str(s) for s, _ in keys], "feats": feats,
                              "fmin": min(feats), "fmax": max(feats)}  # fmt: skip
    if len(saes) == 1:  # an equality the scans can prune row groups with
        params["sae"] = saes[0]
        prune = "x.sae_id = $sae AND x.feature BETWEEN $fmin AND $fmax"
    else:
        prune = "x.feature BETWEEN $fmin AND $fmax"
    k = (
        "(SELECT unnest($saes) AS sae_id, unnest($feats)::INTEGER AS feature, "
        "generate_subscripts($saes, 1) AS i)"
    )
    base = f"SELECT x.* FROM {ident(src.table)} x SEMI JOIN {k} k USING (sae_id, feature) WHERE {prune}"
    sql = f"SELECT r.* FROM ({src.over(base, prune)}) r JOIN {k} k USING (sae_id, feature) ORDER BY k.i"
    return frame(cur, sql, params)


def sae_feature_info(
    cur: Cursor, sae_id: str, features: list[int], columns: tuple[str, ...]
) -> pd.DataFrame:
    """`columns` of the `features` table for some features of one SAE, one row per known
    feature (column `feature` first): index probes on feature_rows where the atlas has it."""
    src = feature_source(cur)
    if src.denormalised:
        keys = [(sae_id, int(f)) for f in features]
        return rows_sql.by_keys(cur, src.table, ("feature", *columns), src.ranks, keys)
    cols = ", ".join(ident(c) for c in ("feature", *columns))
    return frame(
        cur,
        f"SELECT {cols} FROM features WHERE sae_id = ? AND list_contains(?, feature)",
        [sae_id, [int(f) for f in features]],
    )


# ---- helpers ---------------------------------------------------------------------------------
def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts of plain Python values (NaN → None), lists kept as lists."""
    out = []
    for rec in df.to_dict(orient="records"):
        out.append({str(k): plain(v) for k, v in rec.items()})
    return out


def plain(v: Any) -> Any:
    """A plain Python value: numpy scalars and arrays unwrapped, NaN as None."""
    if hasattr(v, "tolist"):
        return v.tolist()
    if isinstance(v, float) and v != v:
        return None
    return v
