"""Map page: every feature placed by a UMAP of its decoder direction (METHODS §5).

At any size the page draws every feature. While more than the chosen number of points are in
view it shows their density (a datashader image, coloured by lobe, layer or density); drag a
box to zoom into it (the server re-renders that box), or use the zoom buttons. Once few enough are in view they are
drawn as points: hover for the explanation, click to open the feature, or pick the lasso or box
tool to collect them into a feature set. Zoom-by-box was chosen over a custom component because
`st.plotly_chart` reports selections (with the box's range) to the server but not zoom or pan,
and a box is one gesture that works the same on every plot (a click on a transparent cell did
not reach the server as a selection in Chromium).
"""

from __future__ import annotations

import hashlib
from typing import Any

import pandas as pd
import streamlit as st

from app import data, state, widgets
from app.figures import map as figures
from core.geometry.density import MapPoints, View

POINT_LIMITS = [100, 1_000, 5_000, 20_000, 50_000]
DEFAULT_POINTS = 20_000
MIN_ZOOM = 1e-4  # the smallest view, as a share of the whole map's width (narrower is widened)


def act_on(keys: list[tuple[str, int]], area: bool) -> None:
    if keys and not area and len(keys) == 1:  # a click: open that feature
        widgets.open_feature(*keys[0])
    if not keys:
        st.caption(
            "Click a point to open its feature; pick the lasso or box tool (top right of the map) "
            "to collect features into a set."
        )
        return
    st.markdown(f"**{len(keys):,} features selected**")
    widgets.add_to_set(state.workspace(), keys, key="map-selection", label="Add selection")


# ---- view --------------------------------------------------------------------------------------
def _view_key(layout: tuple[Any, ...]) -> str:
    return "map-view-" + hashlib.sha1(repr(layout).encode()).hexdigest()[:10]


def current_view(points: MapPoints, layout: tuple[Any, ...]) -> tuple[View, View]:
    """(the view shown, the whole map) for this layout; buttons zoom out or reset it."""
    whole = points.extent().with_aspect(figures.ASPECT)
    key = _view_key(layout)
    view = st.session_state.get(key) or whole
    c = st.columns([1.3, 1.3, 1.5, 4])
    if c[0].button("Zoom in", icon=":material/zoom_in:"):
        view = view.zoomed(0.5)
    if c[1].button("Zoom out", icon=":material/zoom_out:", disabled=view == whole):
        view = view.zoomed(2.0)
        view = whole if view.x1 - view.x0 >= whole.x1 - whole.x0 else view
    if c[2].button("Whole map", icon=":material/zoom_out_map:", disabled=view == whole):
        view = whole
    st.session_state[key] = view
    return view, whole


def set_view(layout: tuple[Any, ...], view: View, whole: View) -> None:
    min_w = (whole.x1 - whole.x0) * MIN_ZOOM
    if view.x1 - view.x0 < min_w:
        view = view.zoomed(min_w / max(view.x1 - view.x0, 1e-12))
    st.session_state[_view_key(layout)] = view.with_aspect(figures.ASPECT)
    st.rerun()


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
        "Points drawn when in view at most", POINT_LIMITS, value=DEFAULT_POINTS, key="map-limit"
    )
    return tuple(ids), joint, colour, int(k), int(limit)


def chart(key: str, points: MapPoints, layout: tuple[Any, ...], colour: str, limit: int) -> None:
    view, whole = current_view(points, layout)
    n_view = int(points.mask(view).sum())
    chart_key = "map-chart-" + hashlib.sha1(repr((layout, view, colour)).encode()).hexdigest()[:10]
    if n_view > limit:
        st.caption(
            f"{len(points):,} features · {n_view:,} in view, shown as their density · "
            f"drag a box to zoom in; at most {limit:,} in view are drawn as points"
        )
        fig = figures.density_figure(points, view, colour)
        event = st.plotly_chart(fig, width="stretch", on_select="rerun", config=figures.DENSITY_CONFIG,
                                selection_mode=("points", "box"), key=chart_key)  # fmt: skip
        target = figures.zoom_target(event)
        if target is not None:
            set_view(layout, target, whole)
        return
    st.caption(f"{len(points):,} features · {n_view:,} in view · UMAP of unit decoder directions")
    df = data.map_point_rows(key, points, view)
    event = st.plotly_chart(figures.points_figure(df, colour, view), width="stretch",
                            on_select="rerun", selection_mode=("points", "box", "lasso"),
                            config=figures.POINTS_CONFIG, key=chart_key)  # fmt: skip
    act_on(*figures.selected(event))


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
    points = data.map_layout(key, ids, joint, k)
    if len(ids) > 1 and colour == "lobe":
        st.caption("Lobes are clustered per SAE: the same lobe number in two SAEs is unrelated.")
    chart(key, points, (ids, joint, k), colour, limit)


main()
