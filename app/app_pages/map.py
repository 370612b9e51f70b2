"""Map page: every feature placed by a UMAP of its decoder direction (METHODS §5).

Colour by lobe, layer or density; hover for the explanation and top tokens; click a point to open
the feature; box- or lasso-select points to collect them into a feature set. Beyond `MAX_POINTS`
the page draws a fixed pseudo-random sample (WebGL stays responsive) and says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import data, state, widgets

DEFAULT_POINTS = 50_000
MAX_POINTS = 200_000
LOBE_COLOURS = [
    "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777",
    "#4f46e5", "#65a30d", "#0d9488", "#b91c1c", "#7c3aed", "#c2410c", "#0369a1", "#a16207",
]  # fmt: skip
NEVER = "#d1d5db"


# ---- figure ------------------------------------------------------------------------------------
def _trace(df: pd.DataFrame, name: str, size: float, **marker: Any) -> go.Scattergl:
    return go.Scattergl(
        x=df["x"], y=df["y"], mode="markers", name=name, hovertext=df["hover"],
        hoverinfo="text", customdata=np.stack([df["sae_id"], df["feature"]], axis=1),
        marker={"size": size, **marker},
    )  # fmt: skip


def figure(df: pd.DataFrame, colour: str) -> go.Figure:
    size = 6 if len(df) < 5_000 else 4 if len(df) < 50_000 else 2.5
    traces: list[go.Scattergl] = []
    if colour == "density":
        dens = np.log10(df["density"].clip(lower=1e-9).to_numpy())
        bar = {"title": "log10 density"}
        traces.append(_trace(df, "features", size, color=dens, colorscale="Viridis", colorbar=bar))
    elif colour == "layer":
        for sae_id, grp in df.groupby("sae_id", sort=False):
            traces.append(_trace(grp, str(sae_id), size))
    else:
        for lobe, grp in df.groupby("lobe", sort=True):
            n = int(str(lobe))
            c = NEVER if n < 0 else LOBE_COLOURS[n % len(LOBE_COLOURS)]
            traces.append(_trace(grp, "never fires" if n < 0 else f"lobe {n}", size, color=c))
    fig = go.Figure(traces)
    fig.update_layout(
        height=720, margin={"l": 10, "r": 10, "t": 10, "b": 10}, dragmode="lasso",
        xaxis={"visible": False}, yaxis={"visible": False, "scaleanchor": "x"},
        legend={"itemsizing": "constant"}, clickmode="event+select",
    )  # fmt: skip
    return fig


# ---- selection ---------------------------------------------------------------------------------
def selected(event: Any) -> tuple[list[tuple[str, int]], bool]:
    """(sae_id, feature) of the selected points, and whether a box / lasso made the selection."""
    sel = (event or {}).get("selection", {}) if event else {}
    keys = []
    for p in sel.get("points", []):
        cd = p.get("customdata")
        if cd is not None and len(cd) >= 2:
            keys.append((str(cd[0]), int(cd[1])))
    area = bool(sel.get("box") or sel.get("lasso"))
    return list(dict.fromkeys(keys)), area


def act_on(keys: list[tuple[str, int]], area: bool) -> None:
    if keys and not area and len(keys) == 1:  # a click: open that feature
        widgets.open_feature(*keys[0])
    if not keys:
        st.caption("Click a point to open its feature; drag a box or lasso to collect features.")
        return
    st.markdown(f"**{len(keys):,} features selected**")
    widgets.add_to_set(state.workspace(), keys, key="map-selection", label="Add selection")


# ---- page --------------------------------------------------------------------------------------
def controls(
    saes: pd.DataFrame, ks: list[int], default_k: int
) -> tuple[tuple[str, ...], bool, str, int, int]:
    c = st.columns([2, 3, 2, 1, 2])
    joint_ids = saes.loc[saes["joint"], "sae_id"].tolist()
    modes = (["joint (residual layers)"] if joint_ids else []) + ["one SAE"]
    joint = c[0].radio("Layout", modes, key="map-layout") != "one SAE"
    if joint:
        ids = c[1].multiselect("SAEs", joint_ids, default=joint_ids, key="map-joint-saes")
    else:
        ids = [c[1].selectbox("SAE", saes["sae_id"].tolist(), key="map-sae")]
    colour = c[2].radio(
        "Colour by", ["lobe", "layer", "density"], horizontal=True, key="map-colour"
    )
    first = ks.index(default_k) if default_k in ks else len(ks) // 2
    k = c[3].selectbox("Lobes", ks, index=first, key="map-k")
    limit = c[4].select_slider(
        "Points drawn at most", [10_000, 20_000, DEFAULT_POINTS, 100_000, MAX_POINTS],
        value=DEFAULT_POINTS, key="map-limit",
    )  # fmt: skip
    return tuple(ids), joint, colour, int(k), int(limit)


def main() -> None:
    key = state.require_atlas()
    st.title("Feature map")
    ok, saes, ks = data.geometry_overview(key)
    if not ok:
        st.info(
            "This atlas has no geometry yet. Add it with `sae-atlas build --overwrite geometry`."
        )
        return
    ids, joint, colour, k, limit = controls(saes, ks, data.default_lobe_k(key))
    if not ids:
        st.warning("Pick at least one SAE.")
        return
    df, total = data.map_points(key, ids, joint, k, limit)
    if total > len(df):
        st.caption(
            f"Showing a fixed random sample of {len(df):,} of {total:,} features — the browser "
            "stays responsive up to about that many; raise the limit or pick fewer SAEs to see more."
        )
    else:
        st.caption(f"{total:,} features · UMAP of unit decoder directions (cosine)")
    if colour == "lobe" and len(ids) > 1:
        st.caption("Lobes are clustered per SAE: the same lobe number in two SAEs is unrelated.")
    event = st.plotly_chart(
        figure(df, colour), width="stretch", on_select="rerun",
        selection_mode=("points", "box", "lasso"), key="map-chart",
    )  # fmt: skip
    act_on(*selected(event))


main()
