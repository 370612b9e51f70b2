"""The Map's plotly figures: a density image with invisible hover cells, or the points.

Density mode (more points in view than the page draws): the image is a datashader PNG laid
under the axes in map coordinates; a grid of transparent markers answers hover ("n features
here"), and the drag mode is a box, which the page turns into a zoom. Points mode:
one WebGL marker per feature, hover for its label, click to open it (the default drag mode is
pan: plotly reports a click as a selection only outside its select and lasso modes), or pick the
lasso or box tool to select.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.geometry.density import LOBE_COLOURS, NEVER, MapPoints, View, density_png, hover_cells

HEIGHT = 720
IMAGE_SIZE = (1000, 720)
"""Pixels of the density image; views keep its aspect so that it is never stretched."""
ASPECT = IMAGE_SIZE[0] / IMAGE_SIZE[1]
DENSITY_CONFIG = {
    "modeBarButtonsToRemove": ["zoom2d", "pan2d", "lasso2d", "zoomIn2d", "zoomOut2d",
                               "autoScale2d", "resetScale2d"],
    "displaylogo": False,
}  # fmt: skip
"""Plotly's own zoom would only stretch the image: the page's zoom buttons and boxes re-render."""
POINTS_CONFIG = {
    "modeBarButtonsToRemove": ["zoom2d", "zoomIn2d", "zoomOut2d", "autoScale2d"],
    "displaylogo": False,
}
"""Points mode keeps pan (the default drag: a click on a point selects it only in pan or zoom
mode), lasso and box select."""
GRID = (50, 36)
"""Hover cells across x and y in density mode."""


def _layout(fig: go.Figure, view: View, dragmode: str) -> go.Figure:
    fig.update_layout(
        height=HEIGHT, margin={"l": 10, "r": 10, "t": 10, "b": 10}, dragmode=dragmode,
        xaxis={"visible": False, "range": [view.x0, view.x1]},
        yaxis={"visible": False, "range": [view.y0, view.y1], "scaleanchor": "x"},
        legend={"itemsizing": "constant"}, clickmode="event+select", plot_bgcolor="white",
    )  # fmt: skip
    return fig


def _legend(points: MapPoints, colour: str) -> list[go.Scatter]:
    """Empty traces that only put the colours in the legend (the image has none)."""
    if colour == "density":
        bar = {"title": "log10 density", "len": 0.5}
        lo, hi = float(points.frame["logd"].min()), float(points.frame["logd"].max())
        marker = {"color": [lo, hi], "colorscale": "Viridis", "showscale": True, "colorbar": bar}
        return [go.Scatter(x=[None, None], y=[None, None], mode="markers", marker=marker,
                           showlegend=False, hoverinfo="skip")]  # fmt: skip
    if colour == "layer":
        names = [
            (points.sae_ids[i], LOBE_COLOURS[i % len(LOBE_COLOURS)])
            for i in range(len(points.sae_ids))
        ]
    else:
        lobes = sorted(int(v) for v in points.frame["lobe"].unique())
        names = [("never fires" if n < 0 else f"lobe {n}",
                  NEVER if n < 0 else LOBE_COLOURS[n % len(LOBE_COLOURS)]) for n in lobes]  # fmt: skip
    return [
        go.Scatter(x=[None], y=[None], mode="markers", name=name, marker={"color": c, "size": 8},
                   hoverinfo="skip")
        for name, c in names
    ]  # fmt: skip


def density_figure(points: MapPoints, view: View, colour: str) -> go.Figure:
    """The density image of `view` with its hover cells."""
    uri = density_png(points, view, colour, *IMAGE_SIZE)
    cells = hover_cells(points, view, *GRID)
    size = max(4.0, IMAGE_SIZE[0] / GRID[0])
    grid = go.Scatter(
        x=cells["cx"], y=cells["cy"], mode="markers", name="zoom cells", showlegend=False,
        marker={"size": size, "color": "rgba(0,0,0,0)", "symbol": "square"},
        hovertext=[f"{int(n):,} feature{'s' * (n != 1)} here · drag a box to zoom in"
                   for n in cells["n"]],
        hoverinfo="text",
    )  # fmt: skip
    fig = go.Figure([grid, *_legend(points, colour)])
    fig.add_layout_image(
        source=uri, xref="x", yref="y", x=view.x0, y=view.y1, sizex=view.x1 - view.x0,
        sizey=view.y1 - view.y0, sizing="stretch", layer="below",
    )  # fmt: skip
    return _layout(fig, view, "select")


def _trace(df: pd.DataFrame, name: str, size: float, **marker: Any) -> go.Scattergl:
    return go.Scattergl(
        x=df["x"], y=df["y"], mode="markers", name=name, hovertext=df["hover"],
        hoverinfo="text", customdata=np.stack([df["sae_id"], df["feature"]], axis=1),
        marker={"size": size, **marker},
    )  # fmt: skip


def points_figure(df: pd.DataFrame, colour: str, view: View) -> go.Figure:
    """One marker per row of `df` (sae_id, feature, x, y, lobe, logd, hover)."""
    size = 7 if len(df) < 2_000 else 5 if len(df) < 10_000 else 3.5
    traces: list[go.Scattergl] = []
    if colour == "density":
        bar = {"title": "log10 density"}
        traces.append(
            _trace(df, "features", size, color=df["logd"], colorscale="Viridis", colorbar=bar)
        )
    elif colour == "layer":
        for i, grp in df.groupby("sae", sort=True):  # the same colour as in the density image
            c = LOBE_COLOURS[int(str(i)) % len(LOBE_COLOURS)]
            traces.append(_trace(grp, str(grp["sae_id"].iloc[0]), size, color=c))
    else:
        for lobe, grp in df.groupby("lobe", sort=True):
            n = int(str(lobe))
            c = NEVER if n < 0 else LOBE_COLOURS[n % len(LOBE_COLOURS)]
            traces.append(_trace(grp, "never fires" if n < 0 else f"lobe {n}", size, color=c))
    return _layout(go.Figure(traces), view, "pan")


# ---- events: what st.plotly_chart reports back --------------------------------------------------
def _custom(point: dict[str, Any]) -> list[Any]:
    """A point's customdata as a list: plotly sends numeric customdata as {'0': …, '1': …}."""
    cd = point.get("customdata")
    if isinstance(cd, dict):
        return [cd[k] for k in sorted(cd, key=lambda k: int(k))]
    return list(cd) if cd is not None else []


def selected(event: Any) -> tuple[list[tuple[str, int]], bool]:
    """(sae_id, feature) of the selected points, and whether a box / lasso made the selection."""
    sel = (event or {}).get("selection", {}) if event else {}
    keys = []
    for p in sel.get("points", []):
        cd = _custom(p)
        if len(cd) >= 2:
            keys.append((str(cd[0]), int(cd[1])))
    area = bool(sel.get("box") or sel.get("lasso"))
    return list(dict.fromkeys(keys)), area


def zoom_target(event: Any) -> View | None:
    """Density mode: the view a dragged box asks for (its range in map coordinates)."""
    sel = (event or {}).get("selection", {}) if event else {}
    for box in sel.get("box") or []:
        xs, ys = box.get("x") or [], box.get("y") or []
        if len(xs) >= 2 and len(ys) >= 2:
            return View(min(xs), max(xs), min(ys), max(ys))
    return None
