"""Keyed reads of `feature_rows` (written by core.store.search_index).

Each row carries `row_key` = rank of its SAE · 2³² + feature, under a unique ART index: a set
of features (a page, search hits, the points in a map view) is one index probe per key,
O(k log F), instead of a scan of the row groups they fall in. A page of a text search is found
by one scan of `search_text` that yields its count and its keys together, then fetched by key.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from core.store.db import Cursor, first, frame, ident

ROW_KEY = "row_key"
SAE_SHIFT = 1 << 32


def sae_ranks(cur: Cursor, table: str) -> tuple[tuple[str, int], ...]:
    """(sae_id, rank) as the keys of `table` encode them."""
    rows = cur.execute(
        f"SELECT sae_id, any_value({ROW_KEY} // {SAE_SHIFT}) FROM {ident(table)} GROUP BY sae_id"
    ).fetchall()
    return tuple((str(s), int(r)) for s, r in rows)


def row_keys(ranks: tuple[tuple[str, int], ...], keys: list[tuple[str, int]]) -> list[int]:
    """(sae_id, feature) -> row_key; keys of an unknown SAE map to -1 (no row has it)."""
    rank = dict(ranks)
    return [rank[s] * SAE_SHIFT + int(f) if s in rank else -1 for s, f in keys]


def by_keys(
    cur: Cursor,
    table: str,
    columns: tuple[str, ...],
    ranks: tuple[tuple[str, int], ...],
    keys: list[tuple[str, int]],
) -> pd.DataFrame:
    """Rows of (sae_id, feature) keys in the order given; unknown keys are skipped."""
    wanted = row_keys(ranks, keys)
    cols = ", ".join(f"r.{ident(c)}" for c in columns)
    match = "= ?" if len(wanted) == 1 else "= ANY(?::BIGINT[])"  # one key: a plain index probe
    df = frame(
        cur,
        f"SELECT r.{ROW_KEY} AS _key, {cols} FROM {ident(table)} r WHERE r.{ROW_KEY} {match}",
        [wanted[0] if len(wanted) == 1 else wanted],
    )
    if len(df) > 1:
        order = {k: i for i, k in enumerate(dict.fromkeys(wanted))}
        df = df.sort_values("_key", key=lambda c: c.map(order), kind="stable")
    return df.drop(columns="_key").reset_index(drop=True)


def page_and_count(
    cur: Cursor,
    table: str,
    columns: tuple[str, ...],
    ranks: tuple[tuple[str, int], ...],
    query: tuple[str, dict[str, Any], str, bool],
    limit: int,
    offset: int,
) -> tuple[pd.DataFrame, int]:
    """(a page, the number of matches) of `query` = (WHERE clause over `r`, its parameters,
    sort column, descending), in one scan: each match's key and sort value are kept, the page's
    keys picked in (sort, sae_id, feature) order (pages never overlap), then fetched by key."""
    where, params, sort, desc = query
    params = {**params, "limit": max(0, int(limit)), "offset": max(0, int(offset))}
    by = f"s {'DESC' if desc else 'ASC'} NULLS LAST, sae_id, feature"
    row = first(
        cur,
        f"WITH m AS MATERIALIZED (SELECT r.sae_id, r.feature, r.{ident(sort)} AS s "
        f"FROM {ident(table)} r {where}) "
        f"SELECT (SELECT count(*) FROM m), (SELECT list({{sae: sae_id, f: feature}} ORDER BY {by}) "
        f"FROM (SELECT * FROM m ORDER BY {by} LIMIT $limit OFFSET $offset))",
        params,
    )
    total = int(row[0]) if row else 0
    keys = [(str(k["sae"]), int(k["f"])) for k in (row[1] or [])] if row else []
    return by_keys(cur, table, columns, ranks, keys), total


def with_info(
    cur: Cursor,
    sql: str,
    params: dict[str, Any],
    ranks: tuple[tuple[str, int], ...],
    columns: tuple[str, ...],
) -> pd.DataFrame:
    """Rows of `sql` (over one SAE `$sae`; it names the other feature `o`) with `columns` of
    that feature joined from feature_rows by key: one statement, the join pruned to the few
    keys (a second keyed query and a pandas merge cost twice as much)."""
    base = dict(ranks).get(str(params["sae"]), -1) * SAE_SHIFT
    cols = ", ".join(f"x.{ident(c)}" for c in columns)
    return frame(
        cur,
        f"SELECT t.* EXCLUDE (o), {cols} FROM ({sql}) t "
        f"LEFT JOIN {ident('feature_rows')} x ON x.{ROW_KEY} = $base + t.o ORDER BY t.rank",
        {**params, "base": base},
    )
