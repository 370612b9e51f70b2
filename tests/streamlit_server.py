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

import pytest

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
