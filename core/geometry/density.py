"""The Map at any number of features: a density image of the points in view (datashader), or
the points themselves once few enough are in view.

Points are plain arrays (MapPoints), loaded once per layout and shared by every session. A view
is an axis-aligned box in map coordinates. Costs (N points, W x H pixels): counting the points
in a view O(N); a density image O(N + W·H) (datashader's numba aggregation, ~0.3 s for 1M
points on 2 cores) plus a PNG encode O(W·H); the grid of hover cells O(N). Datashader compiles
its numba kernels on first use (~3 s): `warm_up` pays that once at server start.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core import render
from core.store.db import Cursor
from core.store.queries import features_for_export

COLOURINGS = ("lobe", "layer", "density")
LOBE_COLOURS = [
    "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777",
    "#4f46e5", "#65a30d", "#0d9488", "#b91c1c", "#7c3aed", "#c2410c", "#0369a1", "#a16207",
]  # fmt: skip
NEVER = "#9ca3af"
"""Features that never fire in a window (lobe -1)."""


@dataclass(frozen=True)
class View:
    """An axis-aligned box of the map, x0 < x1, y0 < y1."""

    x0: float
    x1: float
    y0: float
    y1: float

    def zoomed(self, factor: float, cx: float | None = None, cy: float | None = None) -> View:
        """The view scaled by `factor` (< 1 zooms in) around (cx, cy), its centre by default."""
        cx = (self.x0 + self.x1) / 2 if cx is None else cx
        cy = (self.y0 + self.y1) / 2 if cy is None else cy
        hw, hh = (self.x1 - self.x0) * factor / 2, (self.y1 - self.y0) * factor / 2
        return View(cx - hw, cx + hw, cy - hh, cy + hh)

    def with_aspect(self, aspect: float) -> View:
        """The smallest box containing this one whose width / height is `aspect` (so that a
        fixed-size image is not stretched)."""
        w, h = self.x1 - self.x0, self.y1 - self.y0
        hw, hh = max(w, h * aspect, 1e-9) / 2, max(h, w / aspect, 1e-9) / 2
        cx, cy = (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2
        return View(cx - hw, cx + hw, cy - hh, cy + hh)


@dataclass(frozen=True)
class MapPoints:
    """Every point of one layout. frame columns: sae (int16 index into sae_ids), feature
    (int32), x, y (float32), lobe (int16, -1 never fires), logd (float32 log10 density);
    `lobe_cat` and `sae_cat` are categorical copies for datashader's count_cat."""

    sae_ids: tuple[str, ...]
    frame: pd.DataFrame

    @classmethod
    def from_frame(cls, sae_ids: tuple[str, ...], df: pd.DataFrame) -> MapPoints:
        """From a frame of sae, feature, x, y, lobe, density (the store's map_coordinates)."""
        out = pd.DataFrame(
            {
                "sae": df["sae"].to_numpy(np.int16),
                "feature": df["feature"].to_numpy(np.int32),
                "x": df["x"].to_numpy(np.float32),
                "y": df["y"].to_numpy(np.float32),
                "lobe": df["lobe"].to_numpy(np.int16),
                "logd": np.log10(np.clip(df["density"].to_numpy(np.float64), 1e-9, None)).astype(
                    np.float32
                ),
            }
        )
        out["lobe_cat"] = pd.Categorical(out["lobe"].astype(str))
        out["sae_cat"] = pd.Categorical(out["sae"].astype(str))
        return cls(tuple(sae_ids), out)

    def __len__(self) -> int:
        return len(self.frame)

    def extent(self, pad: float = 0.03) -> View:
        """The box around every point, padded by `pad` of its size."""
        if len(self) == 0:
            return View(-1.0, 1.0, -1.0, 1.0)
        x, y = self.frame["x"], self.frame["y"]
        w, h = float(x.max() - x.min()) or 1.0, float(y.max() - y.min()) or 1.0
        return View(
            float(x.min()) - pad * w, float(x.max()) + pad * w,
            float(y.min()) - pad * h, float(y.max()) + pad * h,
        )  # fmt: skip

    def mask(self, view: View) -> np.ndarray:
        x, y = self.frame["x"].to_numpy(), self.frame["y"].to_numpy()
        return (x >= view.x0) & (x <= view.x1) & (y >= view.y0) & (y <= view.y1)

    def in_view(self, view: View) -> pd.DataFrame:
        return self.frame[self.mask(view)]


def _colour_keys(points: MapPoints, colour: str) -> dict[str, str]:
    if colour == "lobe":
        cats = points.frame["lobe_cat"].cat.categories
        return {c: NEVER if int(c) < 0 else LOBE_COLOURS[int(c) % len(LOBE_COLOURS)] for c in cats}
    cats = points.frame["sae_cat"].cat.categories
    return {c: LOBE_COLOURS[int(c) % len(LOBE_COLOURS)] for c in cats}


def density_image(points: MapPoints, view: View, colour: str, width: int, height: int) -> Any:
    """A datashader RGBA image of the points in `view`: categorical colour mixes by lobe or
    layer, or mean log10 density (viridis); each pixel's alpha grows with its count."""
    import datashader as ds
    import datashader.transfer_functions as tf

    canvas = ds.Canvas(
        plot_width=width, plot_height=height, x_range=(view.x0, view.x1), y_range=(view.y0, view.y1)
    )
    df = points.frame
    if colour == "density":
        agg = canvas.points(df, "x", "y", ds.mean("logd"))
        img = tf.shade(agg, cmap=["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"])
    else:
        column = "lobe_cat" if colour == "lobe" else "sae_cat"
        agg = canvas.points(df, "x", "y", ds.count_cat(column))
        img = tf.shade(agg, color_key=_colour_keys(points, colour), how="eq_hist", min_alpha=60)
    return tf.dynspread(img, threshold=0.6, max_px=2)


def density_png(points: MapPoints, view: View, colour: str, width: int, height: int) -> str:
    """The density image as a `data:image/png;base64,…` URI (what plotly's layout images take)."""
    pil = density_image(points, view, colour, width, height).to_pil()
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=False, compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def hover_cells(points: MapPoints, view: View, nx: int, ny: int) -> pd.DataFrame:
    """The non-empty cells of an nx x ny grid over `view`: centre cx, cy and count n. Drawn as
    invisible markers, they answer hover ("n features here") and clicks (zoom in there)."""
    df = points.in_view(view)
    if df.empty:
        return pd.DataFrame({"cx": [], "cy": [], "n": []})
    dx, dy = (view.x1 - view.x0) / nx, (view.y1 - view.y0) / ny
    ix = np.clip(((df["x"].to_numpy() - view.x0) / dx).astype(np.int64), 0, nx - 1)
    iy = np.clip(((df["y"].to_numpy() - view.y0) / dy).astype(np.int64), 0, ny - 1)
    counts = np.bincount(iy * nx + ix, minlength=nx * ny)
    cells = np.flatnonzero(counts)
    return pd.DataFrame(
        {
            "cx": view.x0 + (cells % nx + 0.5) * dx,
            "cy": view.y0 + (cells // nx + 0.5) * dy,
            "n": counts[cells],
        }
    )


def point_rows(cur: Cursor, points: MapPoints, view: View) -> pd.DataFrame:
    """The points in `view` with sae_id and their escaped hover label (explanation, else top
    tokens): one keyed read of the feature rows, O(n in view)."""
    df = points.in_view(view).copy()
    df["sae_id"] = [points.sae_ids[int(i)] for i in df["sae"]]
    keys = list(zip(df["sae_id"], df["feature"].astype(int), strict=True))
    rows = features_for_export(cur, keys)
    info = {(str(r.sae_id), int(r.feature)): r for r in rows.itertuples(index=False)}
    df["hover"] = [
        _label(info.get(key), key, int(lobe)) for key, lobe in zip(keys, df["lobe"], strict=True)
    ]
    return df


def _label(row: Any, key: tuple[str, int], lobe: int) -> str:
    expl = getattr(row, "explanation", None) if row is not None else None
    tokens = getattr(row, "top_tokens", None) if row is not None else None
    return render.feature_label(key[0], key[1], expl, tokens, note=f" · lobe {lobe}")


def warm_up() -> None:
    """Compile datashader's kernels for every colouring on a few points (~3 s, once)."""
    rng = np.random.default_rng(0)
    n = 64
    df = pd.DataFrame(
        {
            "sae": np.zeros(n, np.int16), "feature": np.arange(n), "x": rng.random(n),
            "y": rng.random(n), "lobe": rng.integers(-1, 4, n), "density": rng.random(n),
        }
    )  # fmt: skip
    points = MapPoints.from_frame(("warm",), df)
    for colour in COLOURINGS:
        density_png(points, points.extent(), colour, 32, 32)
