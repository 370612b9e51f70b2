"""The real `streamlit run` server driven by headless Debian Chromium: search, open a feature,
add it to a set, download the set as CSV. Screenshots go to tests/artifacts/ (git-ignored)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from streamlit_server import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, open_first_row, serve_atlas

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tiny_atlas: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`streamlit run app/main.py -- --atlas PATH` with its own workspace; the --atlas flag
    (not SAE_ATLAS_PATH) must be what picks the atlas."""
    with serve_atlas(tiny_atlas, tmp_path_factory, {"SAE_ATLAS_PATH": ""}) as url:
        yield url


def _search_target(atlas: Path) -> tuple[str, int, str, int]:
    """A search term (a frequent top token), the feature topping its results by density, and
    how many features match (top tokens or explanations, as the app's own query counts them)."""
    from core.store import queries
    from core.store.atlas import Atlas

    cur = Atlas(atlas).cursor()
    rows = cur.execute(
        "SELECT top_tokens FROM features WHERE len(top_tokens) > 0 ORDER BY n_fire DESC"
    ).fetchall()
    words = (t.strip() for (tops,) in rows for t in tops)
    needle = next(w for w in words if len(w) >= 3 and w.isalpha())  # a real word, not " "
    flt = queries.FeatureFilter(text=needle)
    first = queries.search_features(cur, flt, sort="density", desc=True, limit=1)
    n = queries.count_features(cur, flt)
    return str(first["sae_id"].iloc[0]), int(first["feature"].iloc[0]), needle, n


def _read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def test_search_open_add_download(server: str, tiny_atlas: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    sae, feature, needle, n_match = _search_target(tiny_atlas)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page.set_default_timeout(30_000)
        expect.set_options(timeout=30_000)  # a shared 2-core box renders slowly at times

        page.goto(f"{server}/features")
        search = page.get_by_label("Search top tokens or explanations")
        search.fill(needle)
        search.press("Enter")
        expect(page.get_by_text(f"{n_match:,} features match")).to_be_visible()
        grid = page.get_by_test_id("stDataFrame").first
        expect(grid).to_be_visible()
        page.wait_for_timeout(1000)  # the grid canvas paints after the rerun
        page.screenshot(path=str(ARTIFACTS / "features.png"))
        with page.expect_download() as info:
            page.get_by_role("button", name="Download filtered CSV").click()
        info.value.save_as(tmp_path / "filtered.csv")

        open_first_row(page, grid, page.get_by_role("heading", name=f"{sae} · feature {feature}"))
        query = parse_qs(urlparse(page.url).query)
        assert urlparse(page.url).path.endswith("/feature")
        assert query == {"sae": [sae], "feature": [str(feature)]}
        expect(page.locator("span.tok").first).to_be_attached()
        page.wait_for_timeout(800)
        page.screenshot(path=str(ARTIFACTS / "feature.png"))

        page.get_by_label("New set name").fill("browser picks")
        page.get_by_role("button", name="Add", exact=True).click()
        expect(page.get_by_text("Added 1 feature to “browser picks”")).to_be_visible()

        page.get_by_role("link", name="Sets & export").click()
        expect(page.get_by_role("heading", name="Sets & export")).to_be_visible()
        with page.expect_download() as info:
            page.get_by_role("button", name="Download CSV").click()
        target = tmp_path / "set.csv"
        info.value.save_as(target)
        browser.close()

    filtered = _read_csv(tmp_path / "filtered.csv")
    assert len(filtered) == n_match
    assert (filtered[0]["sae_id"], filtered[0]["feature"]) == (sae, str(feature))
    # the search matches top tokens or explanations
    assert all(needle.lower() in (r["top_tokens"] + r["explanation"]).lower() for r in filtered)
    rows = _read_csv(target)
    assert [(r["sae_id"], r["feature"]) for r in rows] == [(sae, str(feature))]
    assert {"site", "density", "max_act", "top_tokens"} <= set(rows[0])
    assert needle.lower() in rows[0]["top_tokens"].lower()
