"""Cached query results for the pages: each wraps one function of `core.store.queries`.

Keyed by the atlas key (path + mtime, see `state.atlas_key`) and the query's arguments. The
atlas is immutable, so results never go stale; later pages add their wrappers here.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from app.state import cursor
from core import export
from core.store import explain_sql, geometry_sql
from core.store import queries as q


@st.cache_data(show_spinner=False, max_entries=16)
def overview(key: str) -> dict[str, Any]:
    with cursor(key) as cur:
        return q.overview(cur)


@st.cache_data(show_spinner=False, max_entries=16)
def sae_table(key: str) -> pd.DataFrame:
    with cursor(key) as cur:
        return q.sae_table(cur)


@st.cache_data(show_spinner=False, max_entries=16)
def feature_columns(key: str) -> q.FeatureSource:
    with cursor(key) as cur:
        return q.feature_source(cur)


@st.cache_data(show_spinner=False, max_entries=256)
def search_features(
    key: str, flt: q.FeatureFilter, sort: str, desc: bool, limit: int, offset: int
) -> pd.DataFrame:
    with cursor(key) as cur:
        return q.search_features(cur, flt, sort=sort, desc=desc, limit=limit, offset=offset)


@st.cache_data(show_spinner=False, max_entries=256)
def count_features(key: str, flt: q.FeatureFilter) -> int:
    with cursor(key) as cur:
        return q.count_features(cur, flt)


@st.cache_data(show_spinner=False, max_entries=256)
def feature_page(key: str, sae_id: str, feature: int) -> dict[str, Any] | None:
    with cursor(key) as cur:
        return q.feature_page(cur, sae_id, feature)


@st.cache_data(show_spinner=False, max_entries=64)
def features_for_export(key: str, keys: tuple[tuple[str, int], ...]) -> pd.DataFrame:
    with cursor(key) as cur:
        return q.features_for_export(cur, list(keys))


def features_csv(key: str, keys: tuple[tuple[str, int], ...]) -> bytes:
    return export.to_csv_bytes(features_for_export(key, keys))


def filtered_csv(key: str, flt: q.FeatureFilter, sort: str, desc: bool) -> bytes:
    """Not cached: built only when the user clicks download (st.download_button callable)."""
    with cursor(key) as cur:
        return export.filtered_csv(cur, flt, sort, desc)


@st.cache_data(show_spinner=False, max_entries=64)
def filtered_keys(
    key: str, flt: q.FeatureFilter, sort: str, desc: bool, limit: int
) -> list[tuple[str, int]]:
    """(sae_id, feature) of the first `limit` filtered rows (for "add all to a set")."""
    df = search_features(key, flt, sort, desc, limit, 0)
    return [(str(s), int(f)) for s, f in zip(df["sae_id"], df["feature"], strict=True)]


@st.cache_data(show_spinner=False, max_entries=256)
def feature_explanations(key: str, sae_id: str, feature: int) -> pd.DataFrame:
    """Every explanation of one feature with its scores (empty without an explanations table)."""
    with cursor(key) as cur:
        if not q.has_table(cur, "explanations"):
            return pd.DataFrame()
        return explain_sql.feature_explanations(cur, sae_id, feature)


@st.cache_data(show_spinner=False, max_entries=128)
def semantic_search(key: str, text: str, k: int, sae_ids: tuple[str, ...]) -> pd.DataFrame:
    """Features whose explanation is nearest in meaning to `text` (empty without embeddings)."""
    from core.explain.embeddings import embed_query  # loads the embedding model on first use

    with cursor(key) as cur:
        if not q.has_table(cur, "explanations"):
            return pd.DataFrame()
    vec = embed_query(text)
    with cursor(key) as cur:
        return explain_sql.semantic_search(cur, vec, k, list(sae_ids) or None)


@st.cache_data(show_spinner=False, max_entries=16)
def geometry_overview(key: str) -> tuple[bool, pd.DataFrame, list[int]]:
    """Whether the atlas has the geometry stage, its SAEs and the stored lobe counts k."""
    with cursor(key) as cur:
        if not geometry_sql.has_geometry(cur):
            return False, pd.DataFrame(), []
        return True, geometry_sql.geometry_saes(cur), geometry_sql.lobe_ks(cur)
