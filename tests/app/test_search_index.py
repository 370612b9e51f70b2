"""The search indexes a committed atlas carries: `feature_rows` answers exactly as the joined
feature rows do, a feature's card holds exactly what its page reads from the tables, and the
vector index finds what the exact embedding scan finds."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest

from core.explain.embeddings import embed_query
from core.store import explain_sql, feature_cards, feature_sql, search_index, vectors
from core.store import queries as q
from core.store.atlas import AtlasWriter

FILTERS = [
    q.FeatureFilter(),
    q.FeatureFilter(text="the"),
    q.FeatureFilter(text="E"),  # case-insensitive, like ILIKE
    q.FeatureFilter(text="100%_"),  # % and _ match literally
    q.FeatureFilter(density_range=(1e-4, 1e-1), min_max_act=0.5),
]


@pytest.fixture()
def copy(tiny_atlas: Path, tmp_path: Path) -> Path:
    out = tmp_path / "atlas.duckdb"
    shutil.copyfile(tiny_atlas, out)
    return out


def _pages(con: duckdb.DuckDBPyConnection) -> list[pd.DataFrame]:
    q._SOURCES.clear()
    sorts = [s for s in q.feature_source(con).sortable if s not in ("umap_x", "umap_y")]
    out = []
    for flt in FILTERS:
        n = q.count_features(con, flt)
        out.append(pd.DataFrame({"count": [n]}))
        for sort in sorts:
            for desc in (True, False):
                page = q.search_features(con, flt, sort=sort, desc=desc, limit=20, offset=5)
                out.append(page[["sae_id", "feature"]].reset_index(drop=True))
                both, total = q.page_with_count(con, flt, sort, desc, 20, 5)  # one scan
                assert total == n
                pd.testing.assert_frame_equal(
                    both[["sae_id", "feature"]], out[-1], check_dtype=False
                )
                out.append(both.reset_index(drop=True))
    return out


def test_feature_rows_answer_like_the_joined_rows(copy: Path) -> None:
    con = duckdb.connect(str(copy))
    assert q.feature_source(con).table == "feature_rows"  # the build wrote it
    fast = _pages(con)
    some = q.search_features(con, limit=2, sort="max_act")
    keys = [(str(a), int(b)) for a, b in zip(some["sae_id"], some["feature"], strict=True)]
    keys.insert(1, ("nope", 1))  # unknown keys are skipped
    rows_fast = q.features_for_export(con, keys)
    search_index.drop_feature_rows(con)
    assert q.feature_source(con).table == "features"
    slow = _pages(con)
    rows_slow = q.features_for_export(con, keys)
    assert len(fast) == len(slow) > 20
    for a, b in zip(fast, slow, strict=True):
        pd.testing.assert_frame_equal(a, b, check_dtype=False)  # an empty page has no dtypes
    pd.testing.assert_frame_equal(rows_fast, rows_slow[rows_fast.columns], check_dtype=False)
    assert len(rows_fast) == 2
    con.close()


def test_vector_index_matches_the_exact_scan(tiny_atlas: Path) -> None:
    con = duckdb.connect(str(tiny_atlas), read_only=True)
    index = vectors.VectorIndex.open(tiny_atlas, vectors.stored_stamp(con))
    assert index is not None and set(index.indexes) == set(explain_sql.sae_ids(con))  # one per SAE
    for text in ("French words", "Python code", "numbers", "the end of a sentence"):
        vec = embed_query(text)
        exact = explain_sql.semantic_search(con, vec, 10)
        fast = vectors.nearest_features(con, index, vec, 10)
        assert fast["similarity"].is_monotonic_decreasing and len(fast) == 10
        # the same ten up to f16 rounding: anything returned is at least as near as the
        # exact tenth, and what the exact scan ranks clearly higher is never missed
        assert fast["similarity"].min() >= exact["similarity"].iloc[-1] - 2e-3
        sure = exact[exact["similarity"] > exact["similarity"].iloc[-1] + 2e-3]
        got = set(zip(fast["sae_id"], fast["feature"], strict=True))
        assert set(zip(sure["sae_id"], sure["feature"], strict=True)) <= got
        sae = explain_sql.sae_ids(con)[-1]
        one = vectors.nearest_features(con, index, vec, 5, [sae])
        assert set(one["sae_id"]) == {sae} and len(one) == 5
    con.close()


def test_a_stale_or_missing_index_is_not_used(copy: Path, tiny_atlas: Path) -> None:
    shutil.copytree(vectors.vectors_dir(tiny_atlas), vectors.vectors_dir(copy))
    con = duckdb.connect(str(copy), read_only=True)
    stamp = vectors.stored_stamp(con)
    con.close()
    assert vectors.VectorIndex.open(copy, stamp) is not None
    assert vectors.VectorIndex.open(copy, "another-commit") is None
    AtlasWriter(copy).commit()  # committed again, same vectors: the same stamp, index kept
    con = duckdb.connect(str(copy), read_only=True)
    new = vectors.stored_stamp(con)
    con.close()
    assert new == stamp and vectors.VectorIndex.open(copy, new) is not None
    assert not (copy.parent / "atlas.duckdb.vectors.tmp").exists()
    shutil.rmtree(vectors.vectors_dir(copy))
    assert vectors.VectorIndex.open(copy, new) is None


def _plain(part: Any) -> Any:
    """A page part as plain values: frames as (columns, rows) with NULL/NaN as None and list
    cells as lists (a card and a table query may type one column differently: str vs object)."""
    if isinstance(part, dict):
        return {k: _plain(v) for k, v in part.items()}
    if not isinstance(part, pd.DataFrame):
        return part

    def cell(v: Any) -> Any:
        if isinstance(v, (list, np.ndarray)):
            return [cell(x) for x in v]
        return None if pd.isna(v) else v

    rows = [[cell(v) for v in r] for r in part.astype(object).itertuples(index=False)]
    return list(part.columns), rows


def test_feature_cards_hold_what_the_tables_give(copy: Path) -> None:
    con = duckdb.connect(str(copy))
    keys = con.execute(  # live and dead features of every SAE, the first and last of each
        "SELECT sae_id, feature FROM feature_rows WHERE feature % 11 = 0 OR feature IN "
        "(0, (SELECT max(feature) FROM feature_rows)) OR n_fire = 0 ORDER BY ALL LIMIT 120"
    ).fetchall()
    keys += [("nope", 1), (keys[0][0], 10**6), (keys[0][0], -1)]
    assert feature_cards.card_ranks(con) is not None  # the commit wrote the cards
    fast = [feature_sql.feature_page(con, s, f) for s, f in keys]
    feature_cards.drop(con)
    feature_cards._RANKS.clear()
    assert feature_cards.card_ranks(con) is None
    slow = [feature_sql.feature_page(con, s, f) for s, f in keys]
    assert sum(p is None for p in fast) == 3 and len(fast) > 40
    for key, a, b in zip(keys, fast, slow, strict=True):
        assert (a is None) == (b is None), key
        if a is not None and b is not None:
            assert a.keys() == b.keys()
            for part in a:
                assert _plain(a[part]) == _plain(b[part]), (key, part)
    pages = [p for p in fast if p is not None]
    sizes = [[len(p[k]) for p in pages] for k in ("examples", "logits", "cooccurring")]
    sizes += [[len(p["flow"][k]) for p in pages] for k in ("class", "predecessors", "successors")]
    assert min(map(max, sizes)) > 0 and min(map(min, sizes)) == 0  # full and empty panels
    con.close()
