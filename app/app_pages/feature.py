"""Feature page (`?sae=…&feature=…`): what one feature fires on and what it does.

Explanation and scores when present, density and activations, top and interval-sampled
example windows, the activation histogram, ± logit tokens, decoder neighbours, prev / next,
add to set. Bad or unknown URL parameters get a message and a picker, never a traceback.
"""

from __future__ import annotations

import html
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import data, state, widgets
from app.text import code, plain
from core import render

SCORE_PREFIXES = ("score", "detection", "fuzzing")


def picker(d_sae: dict[str, int], current: tuple[str, int] | None) -> None:
    """Choose an SAE and a feature number; opens that feature's URL."""
    names = list(d_sae)
    with st.form("pick-feature", border=False):
        c = st.columns([3, 2, 1], vertical_alignment="bottom")
        sae = c[0].selectbox("SAE", names, index=names.index(current[0]) if current else 0)
        feature = c[1].number_input(
            "Feature", min_value=0, step=1, value=current[1] if current else 0
        )
        go_ = c[2].form_submit_button("Open", type="primary")
    if go_:
        if int(feature) >= d_sae[sae]:
            st.error(f"`{sae}` has features 0–{d_sae[sae] - 1}.")
        else:
            st.query_params.from_dict(widgets.feature_params(sae, int(feature)))
            st.rerun()


def header(row: dict[str, Any], sae: dict[str, Any]) -> None:
    sae_id, feature, d_sae = row["sae_id"], row["feature"], int(sae["d_sae"])
    st.title(f"{sae_id} · feature {feature}")
    c = st.columns([1, 1, 6])
    if feature > 0:
        c[0].page_link(
            widgets.FEATURE_PAGE,
            label=f"← {feature - 1}",
            icon=None,
            query_params=widgets.feature_params(sae_id, feature - 1),
        )
    if feature < d_sae - 1:
        c[1].page_link(
            widgets.FEATURE_PAGE,
            label=f"{feature + 1} →",
            query_params=widgets.feature_params(sae_id, feature + 1),
        )
    c[2].caption(
        f"layer {sae['layer']} · {sae['site']} · {sae['architecture']} SAE with "
        f"{d_sae:,} features · link: `{widgets.feature_url(sae_id, feature)}`"
    )
    if row.get("explanation"):
        st.html(render.text_block(str(row["explanation"])))
    elif "explanation" in row:
        st.caption("No explanation for this feature yet.")
    scores = {k: v for k, v in row.items() if k.startswith(SCORE_PREFIXES) and v is not None}
    if scores:
        st.caption(
            " · ".join(
                f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in scores.items()
            )
        )


def stats(row: dict[str, Any]) -> None:
    c = st.columns(4)
    c[0].metric("Density", f"{row['density']:.3e}", help="share of corpus tokens it fires on")
    c[1].metric("Fires on", f"{row['n_fire']:,} tokens")
    c[2].metric("Max activation", f"{row['max_act']:.3f}")
    c[3].metric("Mean activation", f"{row['mean_act']:.3f}", help="over the tokens it fires on")
    tokens = _as_list(row.get("top_tokens"))
    if tokens:
        st.html(render.token_chips(tokens))


def examples_section(key: str, ex: pd.DataFrame, max_act: float) -> None:
    top, inter = ex[ex["kind"] == "top"], ex[ex["kind"] == "interval"]
    if not len(top):
        st.info("This feature never fires on the corpus: no examples (a dead feature).")
        return
    st.markdown(f"#### Top {len(top)} activations")
    st.html(render.example_list(_windows(key, top), max_act))
    if len(inter):
        st.markdown("#### Interval samples")
        st.caption(
            "Windows drawn at random from equal-width intervals of [0, max activation], "
            "strongest interval first."
        )
        parts = []
        n_bins = int(inter["bin"].max()) + 1
        for b, grp in inter.groupby("bin", sort=False):
            caption = (
                f"interval {int(b) + 1}/{n_bins}: act in ({int(b) / n_bins * max_act:.2f}, "
                f"{(int(b) + 1) / n_bins * max_act:.2f}]"
            )
            parts.append(render.example_list(_windows(key, grp), max_act, caption))
        st.html("".join(parts))


def _windows(key: str, ex: pd.DataFrame) -> list[render.Window]:
    """(tokens, acts, centre, act, token bytes) per example; the bytes let characters split
    across byte-level tokens show whole."""
    return [
        (
            list(r.tokens),
            [float(a) for a in r.acts],
            None if pd.isna(r.center) else int(r.center),
            float(r.act),
            data.window_bytes(key, getattr(r, "token_ids", None)),
        )
        for r in ex.itertuples()
    ]


def histogram_chart(hist: dict[str, list[float]] | None) -> None:
    st.markdown("#### Activation histogram")
    if hist is None:
        st.caption("This feature never fires on the corpus.")
        return
    edges, counts = hist["edges"], hist["counts"]
    centers = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]
    fig = go.Figure(
        go.Bar(
            x=centers,
            y=counts,
            width=(edges[1] - edges[0]) if len(edges) > 1 else None,
            marker_color="#ea580c",
            hovertemplate="act %{x:.3f}<br>%{y:,} tokens<extra></extra>",
        )
    )
    fig.update_layout(
        height=240,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        bargap=0.05,
        xaxis_title="activation",
        yaxis_title="tokens",
    )
    st.plotly_chart(fig, width="stretch")


def logits_section(lg: pd.DataFrame) -> None:
    st.markdown("#### Logit effects")
    if lg.empty:
        st.caption("No logit table in this atlas.")
        return
    up, down = lg[lg["sign"] > 0], lg[lg["sign"] < 0]
    c = st.columns(2)
    c[0].caption("Promoted")
    c[0].html(render.token_chips(up["token_str"].tolist(), up["value"].tolist(), show_values=True))
    c[1].caption("Suppressed")
    c[1].html(
        render.token_chips(
            down["token_str"].tolist(), down["value"].tolist(), rgb=(220, 38, 38), show_values=True
        )
    )


def neighbours_section(nb: pd.DataFrame, sae_id: str) -> None:
    st.markdown("#### Nearest features")
    st.caption("by cosine similarity of decoder directions")
    if nb.empty:
        st.caption("No neighbours in this atlas.")
        return
    for r in nb.itertuples():
        c = st.columns([2, 3], vertical_alignment="center")
        c[0].page_link(
            widgets.FEATURE_PAGE,
            label=f"feature {r.neighbour} · cos {r.cosine:.2f}",
            query_params=widgets.feature_params(sae_id, int(r.neighbour)),
        )
        c[1].html(render.token_chips(_as_list(r.top_tokens)[:4]))


def cooccurring_section(co: pd.DataFrame, sae_id: str) -> None:
    st.markdown("#### Co-occurring features")
    st.caption("fire in the same token windows (phi coefficient)")
    if co.empty:
        st.caption("No co-occurrence data for this feature.")
        return
    for r in co.head(8).itertuples():
        c = st.columns([2, 3], vertical_alignment="center")
        c[0].page_link(
            widgets.FEATURE_PAGE,
            label=f"#{r.other} · phi {r.phi:.2f}",
            query_params=widgets.feature_params(sae_id, int(r.other)),
        )
        c[1].html(render.token_chips(_as_list(r.top_tokens)[:4]))


def flow_section(flow: dict[str, pd.DataFrame] | None, sae_id: str, feature: int) -> None:
    """Class, best predecessor per kind and best successor; links to Flow and Steering."""
    st.markdown("#### Flow across layers")
    if flow is None:
        st.caption("This atlas has no flow stage.")
        return
    cls, pred, succ = flow["class"], flow["predecessors"], flow["successors"]
    if not cls.empty and pd.notna(cls["flow_class"].iloc[0]):
        st.markdown(f"class: **{html.escape(str(cls['flow_class'].iloc[0]))}**")
    for title, df, side in (("from", pred, "src"), ("to", succ, "dst")):
        for r in df[df["rank"] == 1].itertuples():
            other_sae, other = getattr(r, f"{side}_sae"), int(getattr(r, f"{side}_feature"))
            st.page_link(
                widgets.FEATURE_PAGE,
                label=f"{title} {other_sae} · {other} ({r.kind}, cos {r.cosine:.2f})",
                query_params=widgets.feature_params(other_sae, other),
            )
    c = st.columns(2)
    params = widgets.feature_params(sae_id, feature)
    c[0].page_link(widgets.FLOW_PAGE, label="Open in Flow", query_params=params)
    c[1].page_link(widgets.STEERING_PAGE, label="Steer with this", query_params=params)


def _as_list(value: Any) -> list[str]:
    """A list cell from DuckDB (list / numpy array), or [] where it is NULL."""
    if value is None or isinstance(value, float) or value is pd.NA:
        return []
    return [str(v) for v in value]


EXPLANATION_COLUMNS = {
    "explanation": st.column_config.TextColumn("explanation", width="large"),
    "embedding_auroc": st.column_config.NumberColumn(
        "embedding AUROC", format="%.2f", help="held-out activating vs random windows"
    ),
    "embedding_auroc_hard": st.column_config.NumberColumn(
        "vs neighbours",
        format="%.2f",
        help="embedding AUROC against neighbouring features' windows",
    ),
    "detection": st.column_config.NumberColumn("detection", format="%.2f"),
    "fuzzing": st.column_config.NumberColumn("fuzzing", format="%.2f"),
    "simulation": st.column_config.NumberColumn("simulation", format="%.2f"),
}


def explanations_section(ex: pd.DataFrame) -> None:
    """Every explanation of the feature (explainer, model, prompt) with its scores."""
    if ex.empty:
        return
    with st.expander(f"All explanations ({len(ex)}) and their scores", expanded=len(ex) > 1):
        shown = [c for c in ex.columns if ex[c].notna().any()]
        st.dataframe(ex, hide_index=True, column_order=shown, column_config=EXPLANATION_COLUMNS)


def feature_view(key: str, sae_id: str, feature: int) -> None:
    page = data.feature_page(key, sae_id, feature)
    if page is None:
        st.error(f"Feature {feature} of {code(sae_id)} is not in this atlas.")
        return
    row, sae = page["row"], page["sae"]
    header(row, sae)
    explanations_section(page["explanations"])
    stats(row)
    left, right = st.columns([3, 2], gap="large")
    with left:
        examples_section(key, page["examples"], float(row["max_act"]))
    with right:
        histogram_chart(page["histogram"])
        logits_section(page["logits"])
        neighbours_section(page["neighbours"], sae_id)
        cooccurring_section(page["cooccurring"], sae_id)
        flow_section(page["flow"], sae_id, feature)
        st.markdown("#### Add to a feature set")
        ws = state.workspace()
        inside = ws.sets_containing(sae_id, feature)
        if inside:
            st.caption("In: " + ", ".join(f"“{plain(n)}”" for n in inside))
        widgets.add_to_set(ws, [(sae_id, feature)], key="feature")


def main() -> None:
    key = state.require_atlas()
    saes = data.sae_table(key)
    d_sae = {str(s): int(n) for s, n in zip(saes["sae_id"], saes["d_sae"], strict=True)}
    target = widgets.parse_feature_params(st.query_params.to_dict(), d_sae)
    if target is None or isinstance(target, str):
        st.title("Feature")
        if isinstance(target, str):
            st.error(target)
        else:
            st.caption("Pick a feature, or open one from the Features table.")
        picker(d_sae, None)
        return
    feature_view(key, *target)
    with st.expander("Open another feature"):
        picker(d_sae, target)


main()
