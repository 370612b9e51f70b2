"""The Map's density image and views (core.geometry.density) and its zoom events."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
from PIL import Image

from app.figures.map import ASPECT, density_figure, points_figure, selected, zoom_target
from core.geometry.density import MapPoints, View, density_png, hover_cells


def _points(n_left: int = 3000, n_right: int = 0) -> MapPoints:
    """Points in the left half of [0, 10] x [0, 10] (and optionally a few on the right)."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(0, 4, n_left), rng.uniform(6, 10, n_right)])
    n = len(x)
    df = pd.DataFrame(
        {"sae": (np.arange(n) % 2).astype(np.int16), "feature": np.arange(n),
         "x": x, "y": rng.uniform(0, 10, n), "lobe": rng.integers(-1, 3, n),
         "density": rng.uniform(1e-5, 1e-2, n)}
    )  # fmt: skip
    return MapPoints.from_frame(("A", "B"), df)


def _alpha(uri: str) -> np.ndarray:
    png = base64.b64decode(uri.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))[:, :, 3]


def test_views_keep_aspect_and_contain_the_box() -> None:
    v = View(0, 10, 0, 1).with_aspect(2.0)
    assert v.x0 <= 0 and v.x1 >= 10 and v.y0 <= 0 and v.y1 >= 1
    assert abs((v.x1 - v.x0) / (v.y1 - v.y0) - 2.0) < 1e-9
    z = View(0, 8, 0, 4).zoomed(0.25, 2, 1)
    assert (z.x0, z.x1, z.y0, z.y1) == (1, 3, 0.5, 1.5)


def test_density_image_is_opaque_only_where_points_are() -> None:
    points = _points()
    for colour in ("lobe", "layer", "density"):
        alpha = _alpha(density_png(points, View(0, 10, 0, 10), colour, 100, 80))
        assert alpha.shape == (80, 100)
        assert (alpha[:, :38] > 0).mean() > 0.5  # x in [0, 4): columns 0..39
        assert (alpha[:, 45:] > 0).sum() == 0  # nothing right of x = 4.5


def test_hover_cells_count_every_point_in_view_once() -> None:
    points = _points(2000, 500)
    view = View(0, 10, 0, 10)
    cells = hover_cells(points, view, 10, 10)
    assert cells["n"].sum() == int(points.mask(view).sum()) == 2500
    assert cells["cx"].between(0, 10).all() and (cells["n"] > 0).all()
    half = View(5, 10, 0, 10)
    assert hover_cells(points, half, 5, 5)["n"].sum() == 500 == int(points.mask(half).sum())


def test_density_figure_lays_the_image_in_map_coordinates() -> None:
    points = _points()
    view = View(0, 10, 0, 10).with_aspect(ASPECT)
    fig = density_figure(points, view, "lobe")
    image = fig.layout.images[0]
    assert image.source.startswith("data:image/png;base64,")
    assert (image.x, image.y) == (view.x0, view.y1) and image.sizex == view.x1 - view.x0
    assert fig.layout.dragmode == "select"
    assert {t.name for t in fig.data} >= {"lobe 0", "lobe 1", "lobe 2", "never fires"}


def test_points_figure_carries_keys_for_selection() -> None:
    points = _points(50)
    df = points.frame.assign(sae_id=["A", "B"] * 25, hover="h")
    fig = points_figure(df, "layer", View(0, 10, 0, 10))
    assert sorted(t.name for t in fig.data) == ["A", "B"]
    assert fig.layout.dragmode == "pan"  # a click selects (opens) a point only outside lasso mode
    keys = {(str(a), int(b)) for t in fig.data for a, b in t.customdata}
    assert len(keys) == 50


def test_zoom_and_selection_events() -> None:
    box = {"selection": {"points": [], "box": [{"x": [6, 2], "y": [1, 3]}], "lasso": []}}
    assert zoom_target(box) == View(2, 6, 1, 3)
    assert zoom_target({"selection": {"points": [], "box": [], "lasso": []}}) is None
    lasso = {"selection": {"points": [{"customdata": ["A", 3]}, {"customdata": ["B", 4]}],
                           "box": [], "lasso": [{"x": [0], "y": [0]}]}}  # fmt: skip
    assert selected(lasso) == ([("A", 3), ("B", 4)], True)
    # numeric customdata arrives from the browser as {'0': …, '1': …}
    click = {"selection": {"points": [{"customdata": {"1": 7, "0": "A"}}], "box": [], "lasso": []}}
    assert selected(click) == ([("A", 7)], False)
