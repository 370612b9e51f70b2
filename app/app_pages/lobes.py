"""Lobes page: groups of features that fire together, what they are about, which documents light
them up, whether they are spatial, and the layer-scale shape of the feature cloud (METHODS §5)."""

from __future__ import annotations

import json

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import data, state, widgets

FACETS = {"source": "Source", "topic": "Topic", "language": "Language"}
STAT_NAMES = {
    "ami_geometry_vs_lobes": "AMI: geometric clusters vs lobes (baseline: 100 label permutations)",
    "logreg_balanced_accuracy": "Lobe from decoder vector, balanced accuracy (baseline: Gaussian vectors)",
}
LOBE_COLUMNS = {
    "top_tokens": st.column_config.ListColumn("top tokens", width="large"),
    "hubs": st.column_config.TextColumn(
        "hub features (highest mean phi inside the lobe)", width="large"
    ),
    "n_windows_won": st.column_config.NumberColumn("windows won"),
}

NUM = {
    c: st.column_config.NumberColumn(c, format=f)
    for c, f in (("value", "%.3f"), ("baseline", "%.3f"), ("baseline sd", "%.3f"), ("z", "%.1f"),
                 ("chance", "%.3f"), ("slope", "%.3f"), ("Gaussian slope", "%.3f"),
                 ("clustering entropy (nats)", "%.2f"))
}  # fmt: skip


# ---- sections ----------------------------------------------------------------------------------
def lobe_section(key: str, sae_id: str, k: int) -> None:
    st.subheader("Lobes")
    df = data.lobe_rows(key, sae_id, k)
    never = df[df["lobe"] < 0]
    show = df[df["lobe"] >= 0][["lobe", "size", "n_windows_won", "top_tokens", "hubs"]]
    st.dataframe(show, hide_index=True, width="stretch", column_config=LOBE_COLUMNS)
    if len(never):
        st.caption(f"{int(never['size'].iloc[0]):,} features never fire in a window (lobe -1).")
    c = st.columns([1, 4])
    lobe = c[0].selectbox("Lobe", show["lobe"].tolist(), key="lobes-pick")
    with c[1]:
        keys = data.lobe_members(key, sae_id, k, int(lobe))
        st.caption(f"Add the {len(keys):,} features of lobe {lobe} to a feature set")
        widgets.add_to_set(state.workspace(), keys, key="lobes-add", label="Add lobe")


def function_section(key: str, sae_id: str, k: int) -> None:
    st.subheader("What lights each lobe up")
    facet = st.radio("Documents by", list(FACETS), format_func=FACETS.get, horizontal=True,
                     key="lobes-facet")  # fmt: skip
    df = data.lobe_function(key, sae_id, k, facet)
    if df.empty:
        st.caption("No window had an active lobe feature.")
        return
    counts = df.pivot_table(index="value", columns="lobe", values="n_windows", fill_value=0)
    share = counts.div(counts.sum(axis=1), axis=0)  # of this value's windows, won by each lobe
    st.caption(
        "Per window of the corpus, the lobe with the largest fraction of its features active "
        "wins. Rows: share of that value's windows won by each lobe (hover for counts)."
    )
    fig = go.Figure(go.Heatmap(
        z=share.to_numpy(), x=[f"lobe {c}" for c in share.columns], y=share.index.astype(str),
        customdata=counts.to_numpy(), colorscale="Blues", zmin=0, zmax=1,
        hovertemplate="%{y} · %{x}: %{z:.0%} (%{customdata} windows)<extra></extra>",
    ))  # fmt: skip
    fig.update_layout(height=160 + 22 * len(share), margin={"l": 10, "r": 10, "t": 10, "b": 10})
    st.plotly_chart(fig, width="stretch")
    with st.expander("Table"):
        table = counts.rename(columns=lambda c: f"lobe {c}").reset_index()
        st.dataframe(
            table.rename(columns={"value": FACETS[facet]}), hide_index=True, width="stretch"
        )


def spatial_section(metrics: pd.DataFrame, sae_id: str) -> None:
    st.subheader("Are lobes spatial?")
    m = metrics[(metrics["sae_id"] == sae_id) & metrics["metric"].isin(list(STAT_NAMES))]
    if m.empty:
        st.caption("No spatial statistics for this SAE.")
        return
    rows = [
        {"statistic": STAT_NAMES[r.metric], "lobes": int(r.k), "value": r.value,
         "baseline": r.baseline_mean, "baseline sd": r.baseline_std, "z": r.z,
         "chance": json.loads(r.detail).get("chance")}
        for r in m.itertuples(index=False)
    ]  # fmt: skip
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config=NUM)
    st.caption(
        "Geometric clusters: spectral clustering of decoder directions on angular similarity "
        "1 − arccos(cos)/π. Lobes: spectral clustering of window co-occurrence (phi + 1). "
        "The paper (Gemma Scope) finds both statistics far above their baselines."
    )


def spectrum_section(metrics: pd.DataFrame, spectra: pd.DataFrame) -> None:
    st.subheader("Layer-scale structure")
    slopes = metrics[metrics["metric"] == "eigen_power_law_slope"]
    ent = metrics[metrics["metric"] == "clustering_entropy"].set_index("sae_id")
    rows = []
    for r in slopes.itertuples(index=False):
        d = json.loads(r.detail)
        rows.append({
            "SAE": r.sae_id, "slope": r.value, "95% CI": f"[{d['ci_low']:.3f}, {d['ci_high']:.3f}]",
            "Gaussian slope": r.baseline_mean, "ranks": f"{d['rank_lo']}–{d['rank_hi']}",
            "clustering entropy (nats)": ent["value"].get(r.sae_id),
        })  # fmt: skip
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config=NUM)
    st.caption(
        "Power law λ ∝ rank^slope of the decoder-row covariance eigenvalues (steeper = less "
        "isotropic; the paper finds the steepest in middle layers). Clustering entropy: kNN "
        "entropy of a Gaussian with the same covariance minus that of the (z-scored, PCA-100) cloud."
    )
    st.plotly_chart(spectrum_figure(spectra, slopes), width="stretch")


def spectrum_figure(spectra: pd.DataFrame, slopes: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for sae_id, grp in spectra.groupby("sae_id", sort=False):
        grp = grp[grp["eigenvalue"] > 0]
        fig.add_scatter(x=grp["rank"], y=grp["eigenvalue"], mode="lines", name=str(sae_id))
    g = spectra[spectra["sae_id"] == spectra["sae_id"].iloc[0]] if len(spectra) else spectra
    fig.add_scatter(x=g["rank"], y=g["gaussian"], mode="lines", name="Gaussian reference",
                    line={"dash": "dash", "color": "#6b7280"})  # fmt: skip
    if len(slopes):
        d = json.loads(slopes["detail"].iloc[0])
        fig.add_vrect(x0=d["rank_lo"], x1=d["rank_hi"], fillcolor="#e5e7eb", opacity=0.4,
                      line_width=0, annotation_text="fit range")  # fmt: skip
    fig.update_layout(
        height=420, xaxis={"type": "log", "title": "rank"},
        yaxis={"type": "log", "title": "eigenvalue", "exponentformat": "power"},
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
    )  # fmt: skip
    return fig


# ---- page --------------------------------------------------------------------------------------
def main() -> None:
    key = state.require_atlas()
    st.title("Lobes")
    ok, saes, ks = data.geometry_overview(key)
    if not ok:
        st.info(
            "This atlas has no geometry yet. Add it with `sae-atlas build --overwrite geometry`."
        )
        return
    c = st.columns([3, 1])
    ids = saes["sae_id"].tolist()
    wanted = st.query_params.get("sae")
    sae_id = c[0].selectbox("SAE", ids, index=ids.index(wanted) if wanted in ids else 0,
                            key="lobes-sae")  # fmt: skip
    default_k = data.default_lobe_k(key)
    default = ks.index(default_k) if default_k in ks else len(ks) // 2
    k = int(c[1].selectbox("Lobes", ks, index=default, key="lobes-k"))
    lobe_section(key, sae_id, k)
    function_section(key, sae_id, k)
    metrics, spectra = data.layer_stats(key)
    spatial_section(metrics, sae_id)
    spectrum_section(metrics, spectra)


main()
