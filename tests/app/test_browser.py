"""The real `streamlit run` server driven by headless Debian Chromium: search, open a feature,
add it to a set, download the set as CSV. Screenshots go to tests/artifacts/ (git-ignored)."""

from __future__ import annotations

import csv
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import duckdb
import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError("streamlit did not become healthy")


@pytest.fixture(scope="module")
def server(tiny_atlas: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`streamlit run app/main.py -- --atlas PATH` on a free port, with its own workspace."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    port = _free_port()
    env = dict(os.environ, SAE_ATLAS_WORKSPACE=str(tmp_path_factory.mktemp("ws") / "ws.duckdb"))
    env.pop("SAE_ATLAS_PATH", None)  # the --atlas flag must be what picks the atlas
    log = tmp_path_factory.mktemp("log") / "streamlit.log"
    cmd = [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true",
           "--", "--atlas", str(tiny_atlas)]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert "Traceback" not in log.read_text(errors="replace"), log.read_text(errors="replace")


def _search_target(atlas: Path) -> tuple[str, int, str, int]:
    """A search term (a frequent top token), the feature topping its results by density, and
    how many features match."""
    con = duckdb.connect(str(atlas), read_only=True)
    try:
        tops = con.execute(
            "SELECT top_tokens FROM features WHERE len(top_tokens) > 0 ORDER BY n_fire DESC LIMIT 1"
        ).fetchall()[0][0]
        needle = max((t.strip() for t in tops), key=len)
        row = con.execute(
            "SELECT f.sae_id, f.feature FROM features f JOIN saes s USING (sae_id) "
            "WHERE array_to_string(top_tokens, ' ') ILIKE ? "
            "ORDER BY density DESC, sae_id, feature LIMIT 1",
            [f"%{needle}%"],
        ).fetchall()[0]
        n = con.execute(
            "SELECT count(*) FROM features WHERE array_to_string(top_tokens, ' ') ILIKE ?",
            [f"%{needle}%"],
        ).fetchall()[0][0]
    finally:
        con.close()
    return str(row[0]), int(row[1]), needle, int(n)


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
        expect(page.get_by_text("features match")).to_contain_text("features match")
        grid = page.get_by_test_id("stDataFrame").first
        expect(grid).to_be_visible()
        page.wait_for_timeout(1000)  # the grid canvas paints after the rerun
        page.screenshot(path=str(ARTIFACTS / "features.png"))
        with page.expect_download() as info:
            page.get_by_role("button", name="Download filtered CSV").click()
        info.value.save_as(tmp_path / "filtered.csv")

        box = grid.bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)  # first row's selection box
        expect(page.get_by_role("heading", name=f"{sae} · feature {feature}")).to_be_visible()
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
    assert all(needle.lower() in r["top_tokens"].lower() for r in filtered)
    rows = _read_csv(target)
    assert [(r["sae_id"], r["feature"]) for r in rows] == [(sae, str(feature))]
    assert {"site", "density", "max_act", "top_tokens"} <= set(rows[0])
    assert needle.lower() in rows[0]["top_tokens"].lower()
