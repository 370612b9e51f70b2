"""Every read of the atlas the pages make, cached: each wraps query functions of `core.store`.

Keyed by the atlas key (path + mtime, see `state.atlas_key`) and the query's arguments. The
atlas is immutable, so results never go stale. Defaults the build recorded (flow thresholds, the
lobe count shown first) come from the run config stored in the atlas, falling back to the
stage config's defaults for an atlas that lacks them. Pages only lay out what these return.
"""

from __future__ import annotations

import inspect
import threading
from typing import Any, TypeVar

import pandas as pd
import streamlit as st

from app.state import atlas_file, cursor
from core import export, render
from core.flow.chains import FlowGraph, Node, flow_graph
from core.flow.config import FlowConfig
from core.geometry import density
from core.geometry.config import GeometryConfig
from core.geometry.density import MapPoints, View
from core.model.loading import ModelLoadError, load_tokenizer
from core.store import explain_sql, feature_sql, flow_sql, geometry_sql, overview_sql, vectors
from core.store import queries as q
from core.store.atlas import prefetch

C = TypeVar("C")


# ---- the atlas as a whole ----------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=16)
def overview(key: str) -> dict[str, Any]:
    with cursor(key) as cur:
        return overview_sql.overview(cur)


@st.cache_data(show_spinner=False, max_entries=16)
def sae_table(key: str) -> pd.DataFrame:
    with cursor(key) as cur:
        return overview_sql.sae_table(cur)


@st.cache_data(show_spinner=False, max_entries=16)
def run_config(key: str) -> dict[str, Any]:
    """The build config the atlas recorded ({} when it has none)."""
    with cursor(key) as cur:
        run = overview_sql.run_info(cur)
    config = (run or {}).get("config")
    return config if isinstance(config, dict) else {}


@st.cache_resource(show_spinner=False, max_entries=2)
def _tokenizer(key: str) -> Any:
    """The atlas model's tokenizer (shared, read-only), or None where it cannot load."""
    spec = (run_config(key).get("model") or {}).get("spec", "default")
    try:
        return load_tokenizer(str(spec))
    except ModelLoadError:
        return None


def window_bytes(key: str, ids: Any) -> list[bytes | None] | None:
    """Each window token's bytes, so characters split across tokens show whole; None when the
    tokenizer or the ids are missing (the stored token strings are shown as they are)."""
    tok = _tokenizer(key)
    if tok is None or ids is None or not hasattr(ids, "__len__") or len(ids) == 0:
        return None
    return render.token_bytes(tok, [int(i) for i in ids])


def _stage_config(key: str, stage: str, cls: type[C]) -> C:
    """A stage's config as recorded in the atlas; its defaults where the record lacks a field
    or holds one the dataclass rejects (an atlas built by another version)."""
    saved = run_config(key).get(stage)
    if not isinstance(saved, dict):
        return cls()
    names = set(inspect.signature(cls).parameters)
    try:
        return cls(**{k: v for k, v in saved.items() if k in names})
    except (TypeError, ValueError):
        return cls()


def flow_config(key: str) -> FlowConfig:
    """The flow stage's config the atlas was built with (thresholds the Flow page starts at)."""
    return _stage_config(key, "flow", FlowConfig)


def default_lobe_k(key: str) -> int:
    """The lobe count the geometry stage showed by default when it built the atlas."""
    return int(_stage_config(key, "geometry", GeometryConfig).default_k)


# ---- feature rows ------------------------------------------------------------------------------
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
def page_with_count(
    key: str, flt: q.FeatureFilter, sort: str, desc: bool, limit: int, offset: int
) -> tuple[pd.DataFrame, int]:
    """One page of rows and how many match (one scan for a text search)."""
    with cursor(key) as cur:
        return q.page_with_count(cur, flt, sort, desc, limit, offset)


@st.cache_data(show_spinner=False, max_entries=256)
def count_features(key: str, flt: q.FeatureFilter) -> int:
    with cursor(key) as cur:
        return q.count_features(cur, flt)


@st.cache_data(show_spinner=False, max_entries=256)
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


@st.cache_data(show_spinner=False, max_entries=128)
def semantic_search(key: str, text: str, k: int, sae_ids: tuple[str, ...]) -> pd.DataFrame:
    """Features whose explanation is nearest in meaning to `text` (empty without embeddings)."""
    from core.explain.embeddings import embed_query  # loads the embedding model on first use

    with cursor(key) as cur:
        if not q.has_table(cur, "explanations"):
            return pd.DataFrame()
    vec = embed_query(text)
    index = vector_index(key)
    with cursor(key) as cur:
        if index is None:  # an atlas committed without its index: the exact scan
            return explain_sql.semantic_search(cur, vec, k, list(sae_ids) or None)
        return vectors.nearest_features(cur, index, vec, k, list(sae_ids) or None)


@st.cache_resource(show_spinner=False, max_entries=4)
def vector_index(key: str) -> vectors.VectorIndex | None:
    """The atlas's explanation index (memory-mapped, shared), or None when missing or stale."""
    with cursor(key) as cur:
        stamp = vectors.stored_stamp(cur)
    return vectors.VectorIndex.open(atlas_file(key), stamp)


# ---- one feature -------------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=256)
def feature_page(key: str, sae_id: str, feature: int) -> dict[str, Any] | None:
    """Everything one feature's page shows (core.store.feature_sql.feature_page): one read."""
    with cursor(key) as cur:
        return feature_sql.feature_page(cur, sae_id, feature)


# ---- flow --------------------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=16)
def has_flow(key: str) -> bool:
    with cursor(key) as cur:
        return flow_sql.has_flow(cur)


@st.cache_data(show_spinner=False, max_entries=256)
def flow_chain(key: str, sae_id: str, feature: int, min_r: float, min_module: float) -> FlowGraph:
    """The feature's chain across layers with the module features feeding it (see flow_graph)."""
    with cursor(key) as cur:
        return flow_graph(cur, Node(sae_id, feature), min_r, min_module)


@st.cache_data(show_spinner=False, max_entries=16)
def flow_summaries(key: str) -> dict[str, pd.DataFrame]:
    """Per-layer class shares, score histograms and the co-firing check."""
    with cursor(key) as cur:
        return {
            "shares": flow_sql.class_shares(cur),
            "hist": flow_sql.score_hist(cur),
            "validation": flow_sql.validation(cur),
        }


# ---- geometry: map and lobes -------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=16)
def geometry_overview(key: str) -> tuple[bool, pd.DataFrame, list[int]]:
    """Whether the atlas has the geometry stage, its SAEs and the stored lobe counts k."""
    with cursor(key) as cur:
        if not geometry_sql.has_geometry(cur):
            return False, pd.DataFrame(), []
        return True, geometry_sql.geometry_saes(cur), geometry_sql.lobe_ks(cur)


@st.cache_resource(show_spinner=False, max_entries=8)
def map_layout(key: str, sae_ids: tuple[str, ...], joint: bool, k: int) -> MapPoints:
    """Every point of one layout as arrays, shared by all sessions (~17 MB per million)."""
    with cursor(key) as cur:
        df = geometry_sql.map_coordinates(cur, list(sae_ids), joint, k)
    return MapPoints.from_frame(sae_ids, df)


def map_point_rows(key: str, points: MapPoints, view: View) -> pd.DataFrame:
    """The points in `view` with their hover labels (not cached: views rarely repeat)."""
    with cursor(key) as cur:
        return density.point_rows(cur, points, view)


@st.cache_resource(show_spinner=False)
def warm_map() -> threading.Thread:
    """Compile datashader's kernels in the background once per server (the first session
    starts it; see core.geometry.density.warm_up)."""
    thread = threading.Thread(target=density.warm_up, name="warm-datashader", daemon=True)
    thread.start()
    return thread


@st.cache_resource(show_spinner=False, max_entries=4)
def warm_atlas(key: str) -> threading.Thread:
    """Read the atlas into the OS page cache in the background, once per atlas (see
    core.store.atlas.prefetch): the first feature pages then do not wait on the disk."""
    thread = threading.Thread(
        target=prefetch, args=(atlas_file(key),), name="warm-atlas", daemon=True
    )
    thread.start()
    return thread


@st.cache_data(show_spinner=False, max_entries=64)
def lobe_rows(key: str, sae_id: str, k: int) -> pd.DataFrame:
    """Lobes with a short description of their hubs (explanation when present, else tokens)."""
    with cursor(key) as cur:
        lobes = geometry_sql.lobe_list(cur, sae_id, k)
        hubs = [(sae_id, int(f)) for fs in lobes["top_features"] for f in list(fs)[:3]]
        rows = q.features_for_export(cur, hubs)
    desc = {int(r["feature"]): _describe(r) for r in rows.to_dict("records")}
    lobes["hubs"] = [
        " · ".join(f"#{int(f)} {desc.get(int(f), '')}" for f in list(fs)[:3])
        for fs in lobes["top_features"]
    ]
    return lobes


def _describe(row: dict[str, Any]) -> str:
    e = row.get("explanation")
    if isinstance(e, str) and e:
        return e[:60]
    toks = row.get("top_tokens")
    return ", ".join(repr(str(t)) for t in list(toks)[:3]) if toks is not None else ""


@st.cache_data(show_spinner=False, max_entries=64)
def lobe_function(key: str, sae_id: str, k: int, facet: str) -> pd.DataFrame:
    """Windows won by each lobe per document `facet` value (source, topic, language)."""
    with cursor(key) as cur:
        return geometry_sql.lobe_function(cur, sae_id, k, facet)


@st.cache_data(show_spinner=False, max_entries=64)
def lobe_members(key: str, sae_id: str, k: int, lobe: int) -> list[tuple[str, int]]:
    with cursor(key) as cur:
        return geometry_sql.lobe_members(cur, sae_id, k, lobe)


@st.cache_data(show_spinner=False, max_entries=16)
def layer_stats(key: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Geometry metrics of every SAE and the eigenvalue spectra of their decoders."""
    with cursor(key) as cur:
        return geometry_sql.metrics(cur), geometry_sql.spectra(cur)
