"""The Steering page end to end in headless Chromium: pick a feature, generate, see both
columns and the measurements. Screenshots go to tests/artifacts/ (git-ignored)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

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


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
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
def server(steer_atlas: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    port = _free_port()
    env = dict(os.environ, SAE_ATLAS_WORKSPACE=str(tmp_path_factory.mktemp("ws") / "ws.duckdb"),
               OMP_NUM_THREADS="1")  # fmt: skip
    log = tmp_path_factory.mktemp("log") / "streamlit.log"
    cmd = [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true",
           "--", "--atlas", str(steer_atlas)]  # fmt: skip
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
