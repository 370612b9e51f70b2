"""The numbers a page shows, read back from the browser and compared with the atlas row they come
from: the Overview's SAE table, the Features table and the feature page's metrics.

st.dataframe paints its cells on a canvas (glide-data-grid); the grid's accessible DOM table
holds the raw values, not the formatted ones. So the tests wrap the canvas `fillText` before
the page loads and record every string painted with its position: the header canvas gives each
column's left edge, the cell canvas gives each cell's text and row (its y). A cell belongs to
the last column whose left edge is at or left of the text's x (right-aligned numbers are drawn
at their column's right edge, still inside it).

The tiny atlas's SAEs have no dead features, so the module serves a copy of it in which one
SAE's `dead_frac` is 0.058 (the value of the report: it showed as 576.17 %).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pytest
from streamlit_server import CHROMIUM, CHROMIUM_ARGS, serve_atlas

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

RECORD_PAINT = """
window.__painted = [];
window.__canvasIds = new WeakMap();
window.__canvasCount = 0;
const fillText = CanvasRenderingContext2D.prototype.fillText;
CanvasRenderingContext2D.prototype.fillText = function (text, x, y, ...rest) {
  if (!window.__canvasIds.has(this.canvas)) {
    window.__canvasIds.set(this.canvas, window.__canvasCount++);
  }
  const m = this.getTransform();
  window.__painted.push([window.__canvasIds.get(this.canvas), String(text),
                         m.e + x * m.a, m.f + y * m.d]);
  return fillText.call(this, text, x, y, ...rest);
};
"""
CELL_PAD = 8  # glide draws a header label and a left-aligned cell 8-9 px right of the column edge


@pytest.fixture(scope="module")
def atlas(tiny_atlas: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny atlas (with its activation folders) where one SAE has dead features."""
    folder = tmp_path_factory.mktemp("numbers")
    path = folder / tiny_atlas.name
    shutil.copy(tiny_atlas, path)
    for acts in tiny_atlas.parent.glob("acts-*"):
        shutil.copytree(acts, folder / acts.name)
    with duckdb.connect(str(path)) as con:
        con.execute(
            "UPDATE saes SET dead_frac = 0.058 WHERE sae_id = (SELECT min(sae_id) FROM saes)"
        )
    return path


@pytest.fixture(scope="module")
def server(atlas: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_atlas(atlas, tmp_path_factory) as url:
        yield url


@pytest.fixture(scope="module")
def page(server: str) -> Iterator[Page]:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1600, "height": 1000})
        pg.set_default_timeout(30_000)
        expect.set_options(timeout=30_000)  # a shared 2-core box renders slowly at times
        pg.add_init_script(RECORD_PAINT)
        yield pg
        browser.close()


def _atlas(path: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(path), read_only=True)


def painted_rows(page: Page, header: str, cell: str) -> list[dict[str, str]]:
    """The rows, top to bottom, of the grid whose header canvas painted `header` and whose cell
    canvas painted `cell`: {column label: shown text}, the latest paint of each cell."""
    records: list[list[Any]] = page.evaluate("window.__painted")
    head_id = max(c for c, t, _, _ in records if t == header)
    cell_id = max(c for c, t, _, _ in records if t == cell)
    edges = sorted((x - CELL_PAD, t) for c, t, x, _ in records if c == head_id)
    rows: dict[int, dict[str, str]] = {}
    for c, text, x, y in records:
        owners = [label for left, label in edges if left <= x + 1]
        if c == cell_id and owners:
            rows.setdefault(round(y), {})[owners[-1]] = text
    return [rows[y] for y in sorted(rows)]


def wait_painted(page: Page, *texts: str) -> None:
    page.wait_for_function(
        "texts => texts.every(t => window.__painted.some(r => r[1] === t))", arg=list(texts)
    )


def percent_value(shown: str) -> float:
    """'83.73%' / '9,804%' -> the fraction it stands for."""
    assert shown.endswith("%"), shown
    return float(shown[:-1].replace(",", "")) / 100


def test_overview_sae_table_matches_the_saes_rows(page: Page, server: str, atlas: Path) -> None:
    rows = (
        _atlas(atlas)
        .execute("SELECT sae_id, fvu, dead_frac, frac_loss_recovered FROM saes ORDER BY sae_id")
        .fetchall()
    )
    page.goto(f"{server}/")
    wait_painted(page, "loss recovered", *(r[0] for r in rows))
    page.wait_for_timeout(500)
    table = {r["SAE"]: r for r in painted_rows(page, "loss recovered", rows[0][0])}
    assert sorted(table) == [r[0] for r in rows]
    for sae_id, fvu, dead, recovered in rows:
        shown = table[sae_id]
        assert float(shown["FVU"]) == pytest.approx(fvu, abs=5.01e-4), (sae_id, shown)
        # percent: up to 2 decimals of the percentage, so within 5e-5 of the fraction
        assert percent_value(shown["dead"]) == pytest.approx(dead, abs=5.01e-5), (sae_id, shown)
        assert percent_value(shown["loss recovered"]) == pytest.approx(recovered, abs=5.01e-5), (
            sae_id,
            shown,
        )


def _scientific(shown: str, value: float) -> bool:
    """'2.15e-1' (JS %.2e) stands for value: the mantissa's last digit is within rounding."""
    return math.isclose(float(shown), value, rel_tol=5.01e-3, abs_tol=1e-12)


def test_features_table_matches_the_features_rows(page: Page, server: str, atlas: Path) -> None:
    con = _atlas(atlas)
    top = con.execute(
        "SELECT sae_id, feature FROM features ORDER BY density DESC, sae_id, feature LIMIT 1"
    ).fetchone()
    assert top is not None
    page.set_viewport_size({"width": 3000, "height": 1000})  # glide paints visible columns only
    page.goto(f"{server}/features")
    wait_painted(page, "max act", str(top[0]))
    page.wait_for_timeout(1000)
    shown_rows = painted_rows(page, "max act", str(top[0]))[:8]
    assert len(shown_rows) >= 5
    assert (shown_rows[0]["SAE"], shown_rows[0]["feature"]) == (top[0], str(top[1]))
    for shown in shown_rows:
        row = con.execute(
            "SELECT density, max_act, mean_act, n_fire FROM features "
            "WHERE sae_id = ? AND feature = ?",
            [shown["SAE"], int(shown["feature"])],
        ).fetchone()
        assert row is not None, shown
        density, max_act, mean_act, n_fire = row
        assert _scientific(shown["density"], density), (shown, density)
        assert float(shown["max act"]) == pytest.approx(max_act, abs=5.01e-4), shown
        assert float(shown["mean act"]) == pytest.approx(mean_act, abs=5.01e-4), shown
        assert int(shown["fires"]) == n_fire, shown
    densities = [float(s["density"]) for s in shown_rows]
    assert densities == sorted(densities, reverse=True)  # the default sort, as shown


def _metric(page: Page, label: str) -> str:
    box = page.get_by_test_id("stMetric").filter(has_text=label)
    return box.get_by_test_id("stMetricValue").inner_text().strip()


def test_feature_page_metrics_match_the_features_row(page: Page, server: str, atlas: Path) -> None:
    from playwright.sync_api import expect

    con = _atlas(atlas)
    keys = con.execute(
        "(SELECT sae_id, feature FROM features ORDER BY density DESC, sae_id, feature LIMIT 1) "
        "UNION ALL (SELECT sae_id, feature FROM features WHERE n_fire > 0 "
        "ORDER BY max_act DESC, sae_id, feature LIMIT 1)"
    ).fetchall()
    for sae_id, feature in keys:
        density, n_fire, max_act, mean_act = (
            con.execute(
                "SELECT density, n_fire, max_act, mean_act FROM features "
                "WHERE sae_id = ? AND feature = ?",
                [sae_id, feature],
            ).fetchone()
            or (None,) * 4
        )
        page.goto(f"{server}/feature?sae={sae_id}&feature={feature}")
        expect(page.get_by_role("heading", name=f"{sae_id} · feature {feature}")).to_be_visible()
        expect(page.get_by_test_id("stMetric").first).to_be_visible()
        assert float(_metric(page, "Density")) == pytest.approx(density, rel=5.01e-4)
        assert _metric(page, "Fires on") == f"{n_fire:,} tokens"
        assert float(_metric(page, "Max activation")) == pytest.approx(max_act, abs=5.01e-4)
        assert float(_metric(page, "Mean activation")) == pytest.approx(mean_act, abs=5.01e-4)
