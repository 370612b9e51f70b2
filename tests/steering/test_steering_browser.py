"""The Steering page end to end in headless Chromium: pick a feature, generate, see both
columns and the measurements. Screenshots go to tests/artifacts/ (git-ignored)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit_server import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, serve_atlas

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(steer_atlas: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_atlas(steer_atlas, tmp_path_factory, {"OMP_NUM_THREADS": "1"}) as url:
        yield url


def test_pick_generate_see_both_columns(server: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(180_000)  # the first visit loads the model
        expect.set_options(timeout=180_000)
        page.goto(f"{server}/steering")
        expect(page.get_by_role("heading", name="Steering")).to_be_visible()
        page.get_by_role("tab", name="By number").click()
        page.get_by_label("Feature", exact=True).fill("3")
        page.get_by_role("button", name="Add", exact=True).last.click()
        expect(page.get_by_text("Strength (× max act)")).to_be_visible()
        expect(page.get_by_role("link", name="#3 ·")).to_be_visible()
        tokens = page.get_by_role("spinbutton", name="Max new tokens")
        tokens.fill("8")
        tokens.press("Enter")
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / "steering-setup.png"))
        page.get_by_role("button", name="Generate").click()
        expect(page.get_by_text("KL at prompt end")).to_be_visible()
        columns = page.get_by_test_id("stText")
        expect(columns).to_have_count(2)
        assert all(t.strip() for t in columns.all_inner_texts())
        assert "steer=" in page.url
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / "steering-result.png"), full_page=True)
        browser.close()
