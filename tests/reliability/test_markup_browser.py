"""In a real browser, a set named like a markdown image is shown as text and fetches nothing,
on the Sets page and in the "In: …" caption of a feature page of that set."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from streamlit_server import CHROMIUM, CHROMIUM_ARGS, serve_atlas

from core.workspace import Workspace

pytestmark = pytest.mark.browser
EVIL = "![i](http://host/x.png)"


@pytest.fixture(scope="module")
def feature(tiny_atlas: Path) -> tuple[str, int]:
    with duckdb.connect(str(tiny_atlas), read_only=True) as con:
        row = con.execute("SELECT sae_id FROM saes ORDER BY layer, sae_id LIMIT 1").fetchone()
    assert row is not None
    return str(row[0]), 0


@pytest.fixture(scope="module")
def server(
    tiny_atlas: Path, feature: tuple[str, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    ws = tmp_path_factory.mktemp("ws") / "ws.duckdb"
    Workspace(ws).create_set(EVIL, [feature])
    with serve_atlas(tiny_atlas, tmp_path_factory, {"SAE_ATLAS_WORKSPACE": str(ws)}) as url:
        yield url


def test_hostile_set_name_is_text_and_fetches_nothing(
    server: str, feature: tuple[str, int]
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        expect.set_options(timeout=30_000)
        fetched: list[str] = []
        page.on("request", lambda r: fetched.append(r.url))
        page.goto(f"{server}/feature?sae={feature[0]}&feature={feature[1]}")
        expect(page.get_by_text(f"In: “{EVIL}”", exact=True)).to_be_visible()
        page.goto(f"{server}/sets")
        expect(page.get_by_text(f"Yes, delete “{EVIL}”", exact=False)).to_be_attached()
        assert page.locator("img[src*='host/x.png']").count() == 0
        browser.close()
    assert not [u for u in fetched if "host/x.png" in u], fetched
