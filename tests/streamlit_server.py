"""The real `streamlit run` server on a free localhost port, for the browser tests.

Browser tests drive Debian's Chromium (`apt-get install chromium`; tests/run.sh installs it)
through Playwright with the flags below; they fail, never skip, when it is missing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (tests/run.sh does)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
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


@contextmanager
def serve(log: Path, env: dict[str, str], app_args: list[str] | None = None) -> Iterator[str]:
    """Run `streamlit run app/main.py [-- app_args]`; yield its URL; fail on any traceback."""
    require_chromium()
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true"]  # fmt: skip
    if app_args:
        cmd += ["--", *app_args]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text


@contextmanager
def serve_atlas(
    atlas: Path, factory: pytest.TempPathFactory, env: dict[str, str] | None = None
) -> Iterator[str]:
    """`serve` for `-- --atlas PATH`, with a fresh workspace and log under the test's tmp dirs."""
    env = {"SAE_ATLAS_WORKSPACE": str(factory.mktemp("ws") / "ws.duckdb"), **(env or {})}
    with serve(factory.mktemp("log") / "streamlit.log", env, ["--atlas", str(atlas)]) as url:
        yield url


# ---- shared browser gestures ------------------------------------------------------------------
def open_first_row(page: Page, grid: Locator, heading: Locator) -> None:
    """Click the first row's selection box. The grid is scrolled to the top of the viewport
    first (the download button below it may have scrolled the page); under load the canvas
    can take a click before it has wired its handlers, so click again (at most 3 times)."""
    from playwright.sync_api import expect

    grid.evaluate("el => el.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(300)
    box = grid.bounding_box()
    assert box is not None
    for attempt in range(3):
        page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)
        try:
            expect(heading).to_be_visible(timeout=20_000)
            return
        except AssertionError:
            if attempt == 2:
                raise


def plot_tool(page: Any, title: str) -> None:
    """Pick a tool of the plot's mode bar ('Lasso Select', 'Box Select', 'Pan')."""
    chart = page.locator("[data-testid='stPlotlyChart']").first
    chart.hover()  # the mode bar shows while the pointer is over the chart
    chart.locator(f".modebar-btn[data-title='{title}']").first.click()


def lasso(page: Any) -> None:
    """Pick the lasso tool and drag a lasso around most of the plot area."""
    plot_tool(page, "Lasso Select")
    area = page.locator("[data-testid='stPlotlyChart'] .nsewdrag").first
    box = area.bounding_box()
    assert box is not None
    x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
    path = [(0.02, 0.02), (0.98, 0.02), (0.98, 0.98), (0.02, 0.98), (0.02, 0.05)]
    page.mouse.move(x0 + w * path[0][0], y0 + h * path[0][1])
    page.mouse.down()
    for fx, fy in path[1:]:
        page.mouse.move(x0 + w * fx, y0 + h * fy, steps=8)
    page.mouse.up()


def click_a_point(page: Any) -> None:
    """Click the first point of the first non-empty WebGL trace (its pixel from plotly's axes)."""
    x, y = page.evaluate(
        """() => { const gd = document.querySelector("[data-testid='stPlotlyChart'] .js-plotly-plot");
        const t = gd._fullData.find(t => t.x && t.x.length > 0);
        const r = gd.querySelector('.nsewdrag').getBoundingClientRect();
        return [r.left + gd._fullLayout.xaxis.l2p(t.x[0]), r.top + gd._fullLayout.yaxis.l2p(t.y[0])]; }"""
    )
    page.mouse.move(x, y)
    page.wait_for_timeout(300)  # plotly picks the clicked point from the hover
    page.mouse.click(x, y)
