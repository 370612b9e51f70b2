"""Features: every feature of every SAE — search, filter, sort, page through, open, collect, export."""

from __future__ import annotations

import hashlib
import math

import pandas as pd
import streamlit as st

from app import data, state, widgets
from app.text import plain
from core.store.queries import FeatureFilter

DENSITY_STEPS = [0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]
PAGE_SIZES = [25, 50, 100, 200]
MAX_ADD = 5000  # at most this many filtered features go into a set in one click

PREFERRED_ORDER = [
    "open",
    "sae_id",
    "feature",
    "explanation",
    "top_tokens",
    "density",
    "max_act",
    "mean_act",
    "n_fire",
    "lobe",
    "flow_class",
]

ALWAYS_SHOWN = (
    "open",
    "sae_id",
    "feature",
    "top_tokens",
    "density",
    "max_act",
    "mean_act",
    "n_fire",
)

COLUMN_CONFIG = {
    "open": st.column_config.LinkColumn(
        "", display_text="open", width="small", help="shareable link to the feature page"
    ),
    "sae_id": st.column_config.TextColumn("SAE"),
    "top_tokens": st.column_config.ListColumn("top tokens", width="large"),
    "density": st.column_config.NumberColumn("density", format="%.2e"),
    "max_act": st.column_config.NumberColumn("max act", format="%.3f"),
    "mean_act": st.column_config.NumberColumn("mean act", format="%.3f"),
    "n_fire": st.column_config.NumberColumn("fires", format="%d"),
}


def _density_label(v: float) -> str:
    return "0" if v == 0 else ("1" if v == 1 else f"{v:.0e}")


def filters(sae_ids: list[str], sortable: tuple[str, ...]) -> tuple[FeatureFilter, str, bool, int]:
    """The filter widgets -> (filter, sort column, descending, page size)."""
    top = st.columns([3, 3, 2], vertical_alignment="bottom")
    text = top[0].text_input(
        "Search top tokens or explanations", key="f-text", placeholder="e.g.  the  ·  def  ·  Paris"
    )
    top[1].text_input(
        "Search by meaning", key="f-meaning", placeholder="e.g.  French cities  ·  Python code"
    )
    saes = top[2].multiselect("SAEs", sae_ids, key="f-saes", placeholder="all SAEs")
    c = st.columns([3, 2, 2, 1.3, 1], vertical_alignment="bottom")
    lo, hi = c[0].select_slider(
        "Density", DENSITY_STEPS, value=(0.0, 1.0), key="f-density", format_func=_density_label
    )
    min_act = c[1].number_input("Max activation ≥", min_value=0.0, value=0.0, step=0.5, key="f-act")
    default_sort = sortable.index("density") if "density" in sortable else 0
    sort = c[2].selectbox("Sort by", sortable, index=default_sort, key="f-sort")
    desc = c[3].toggle("Descending", value=True, key="f-desc")
    size = c[4].selectbox("Rows", PAGE_SIZES, index=1, key="f-size")
    density = None if (lo, hi) == (0.0, 1.0) else (float(lo), float(hi))
    flt = FeatureFilter(
        text=text.strip(),
        sae_ids=tuple(saes),
        density_range=density,
        min_max_act=float(min_act) if min_act > 0 else None,
    )
    return flt, str(sort), bool(desc), int(size)


def table(rows: pd.DataFrame, table_key: str) -> tuple[str, int] | None:
    """Show one page of rows; returns the (sae_id, feature) the user clicked, if any."""
    rows = rows.assign(
        open=[
            widgets.feature_url(s, f) for s, f in zip(rows["sae_id"], rows["feature"], strict=True)
        ]
    )
    order = [c for c in PREFERRED_ORDER if c in rows.columns]
    order += [c for c in rows.columns if c not in order and c not in ("site", "layer")]
    order = [c for c in order if c in ALWAYS_SHOWN or rows[c].notna().any()]  # hide empty extras
    event = st.dataframe(
        rows,
        hide_index=True,
        column_order=order,
        column_config=COLUMN_CONFIG,
        on_select="rerun",
        selection_mode="single-row",
        key=table_key,
        height=min(38 + 35 * len(rows), 720),
    )
    picked = event.selection.rows if event is not None else []
    if not picked:
        return None
    row = rows.iloc[picked[0]]
    return str(row["sae_id"]), int(row["feature"])


def actions(key: str, flt: FeatureFilter, sort: str, desc: bool, total: int) -> None:
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    with left:
        st.markdown(
            f"**Add the {min(total, MAX_ADD):,} filtered features to a set**"
            + (f" (the first {MAX_ADD:,})" if total > MAX_ADD else "")
        )
        widgets.add_to_set(
            state.workspace(),
            lambda: data.filtered_keys(key, flt, sort, desc, MAX_ADD),
            key="features",
            label="Add all",
        )
    right.download_button(
        "Download filtered CSV",
        lambda: data.filtered_csv(key, flt, sort, desc),
        file_name="features.csv",
        mime="text/csv",
        on_click="ignore",
        icon=":material/download:",
        disabled=total == 0,
    )


def semantic_results(key: str, query: str, sae_ids: tuple[str, ...]) -> None:
    """The features whose explanation is nearest in meaning to the query (embedding cosine)."""
    hits = data.semantic_search(key, query, 25, sae_ids)
    if hits.empty:
        st.caption("No explanation embeddings in this atlas: run `sae-atlas explain`.")
        return
    hits = hits.assign(
        open=[
            widgets.feature_url(s, f) for s, f in zip(hits["sae_id"], hits["feature"], strict=True)
        ]
    )
    st.caption(f"Nearest in meaning to “{plain(query)}”")
    st.dataframe(
        hits,
        hide_index=True,
        column_order=["open", "sae_id", "feature", "similarity", "explanation", "embedding_auroc"],
        column_config={
            **COLUMN_CONFIG,
            "similarity": st.column_config.NumberColumn("similarity", format="%.3f"),
            "embedding_auroc": st.column_config.NumberColumn("embedding AUROC", format="%.2f"),
        },
    )


def main() -> None:
    key = state.require_atlas()
    st.title("Features")
    source = data.feature_columns(key)
    sae_ids = data.sae_table(key)["sae_id"].tolist()
    flt, sort, desc, size = filters(sae_ids, source.sortable)
    meaning = str(st.session_state.get("f-meaning") or "").strip()
    if meaning:
        semantic_results(key, meaning, flt.sae_ids)
    digest = hashlib.sha1(repr((flt, sort, desc, size)).encode()).hexdigest()[:10]
    total = data.page_with_count(key, flt, sort, desc, size, 0)[1]  # one scan: count + page 1
    st.caption(f"{total:,} features match · click a row to open it")
    slot = st.container()
    page = st.pagination(max(1, math.ceil(total / size)), key=f"page-{digest}")
    rows = data.page_with_count(key, flt, sort, desc, size, (page - 1) * size)[0]  # cached
    nonce = st.session_state.setdefault("features-nonce", 0)
    with slot:
        clicked = table(rows, f"table-{digest}-{page}-{nonce}")
    if clicked:
        st.session_state["features-nonce"] = nonce + 1  # a fresh table (no selection) on return
        widgets.open_feature(*clicked)
    st.divider()
    actions(key, flt, sort, desc, total)


main()
