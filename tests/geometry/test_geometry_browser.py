"""The real `streamlit run` server in headless Chromium: lasso features on the Map, add them to a
new set, then open the Lobes page. Screenshots go to tests/artifacts/ (git-ignored)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from streamlit_server import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, lasso, serve

from core.geometry.config import GeometryConfig
from core.geometry.stage import compute_geometry

pytestmark = pytest.mark.browser
SAES = ("L1/resid_post", "L2/resid_post")


def _atlas(path: Path, make_atlas: Any) -> None:
    syn = make_atlas(saes=SAES, n_docs=60, path=str(path))
    cfg = GeometryConfig(window=16, min_window_tokens=8, lobe_ks=(2, 4), default_k=4,
                         stats_ks=(4,), n_permutations=20, umap_epochs=30, entropy_dims=20,
                         spectrum_ranks=(3, 30))  # fmt: skip
    tables, _ = compute_geometry(syn.con, syn.decoders, {s: "resid_post" for s in SAES}, cfg)
    con = syn.con
    for name, df in tables.items():
        con.register("_f", df)
        con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM _f")
        con.unregister("_f")
    con.execute("INSERT INTO runs (run_id, created, schema_version) VALUES ('t', now(), 1)")
    for s in SAES:
        con.execute("INSERT INTO saes (sae_id, layer, site, d_in, d_sae) VALUES (?, ?, 'resid_post', 48, 100)",
                    [s, int(s[1])])  # fmt: skip
    con.execute("UPDATE features SET n_fire = 10, density = 0.01, mean_act = 1.0")
    con.execute("DROP TABLE activations")
    con.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, make_atlas: Any) -> Iterator[str]:
    atlas = tmp_path_factory.mktemp("geo-browser") / "atlas.duckdb"
    _atlas(atlas, make_atlas)
    env = {"SAE_ATLAS_WORKSPACE": str(tmp_path_factory.mktemp("ws") / "ws.duckdb"),
           "SAE_ATLAS_PATH": str(atlas)}  # fmt: skip
    log = tmp_path_factory.mktemp("log") / "streamlit.log"
    with serve(log, env) as url:
        yield url


def test_map_lasso_to_set_and_lobes_page(server: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    url = server
    expect.set_options(timeout=60_000)  # a loaded 2-core machine renders slowly
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, "--enable-unsafe-swiftshader"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(60_000)
        page.goto(f"{url}/map")
        expect(page.get_by_role("heading", name="Feature map")).to_be_visible()
        expect(page.locator("[data-testid='stPlotlyChart'] .nsewdrag").first).to_be_attached()
        page.wait_for_timeout(1500)  # WebGL paints after the chart mounts
        page.screenshot(path=str(ARTIFACTS / "map.png"))

        lasso(page)
        expect(page.get_by_text("features selected")).to_be_visible()
        n = int(page.get_by_text("features selected").inner_text().split()[0].replace(",", ""))
        assert n > 100  # most of the 200 points of the joint layout
        page.get_by_label("New set name").fill("map picks")
        page.get_by_role("button", name="Add selection").click()
        expect(page.get_by_text(f"Added {n:,} features to “map picks”")).to_be_visible()

        page.goto(f"{url}/sets?set=map+picks")  # the set holds exactly the lassoed features
        chosen = page.get_by_role("combobox", name="Feature set")
        expect(chosen).to_have_value(re.compile(rf"map picks\s+\({n} features\)"))

        page.goto(f"{url}/lobes")
        expect(page.get_by_role("heading", name="Layer-scale structure")).to_be_visible()
        expect(page.get_by_test_id("stDataFrame").first).to_be_visible()
        page.wait_for_timeout(2000)  # grid canvases paint after the rerun
        page.screenshot(path=str(ARTIFACTS / "lobes.png"))
        page.get_by_role("heading", name="Are lobes spatial?").scroll_into_view_if_needed()
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ARTIFACTS / "lobes-statistics.png"))
        browser.close()
