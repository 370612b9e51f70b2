"""`sae-atlas app` listens on 127.0.0.1 only, and SIGTERM / SIGINT to it stop the streamlit server
it started: the port closes and no streamlit process is left."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def _listening(port: int) -> list[str]:
    return sorted(
        c.laddr.ip
        for c in psutil.net_connections("inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_app_binds_locally_and_stops_on_a_signal(
    sig: signal.Signals, tiny_atlas: Path, tmp_path: Path
) -> None:
    port = _free_port()
    env = dict(os.environ, SAE_ATLAS_WORKSPACE=str(tmp_path / "ws.duckdb"))
    parent = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "app", "--atlas", str(tiny_atlas), "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    children: list[psutil.Process] = []
    try:
        deadline = time.time() + 90
        while time.time() < deadline and not _answers(port):
            assert parent.poll() is None, "the app exited before it served"
            time.sleep(0.3)
        assert _answers(port)
        assert _listening(port) == ["127.0.0.1"]  # not 0.0.0.0 / ::
        children = psutil.Process(parent.pid).children(recursive=True)
        assert any("streamlit" in " ".join(c.cmdline()) for c in children)
        parent.send_signal(sig)
        parent.wait(timeout=15)
        deadline = time.time() + 5
        while time.time() < deadline and (_answers(port) or _listening(port)):
            time.sleep(0.1)
        assert not _answers(port) and _listening(port) == []
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    finally:
        if parent.poll() is None:
            parent.kill()
        for child in children:
            if child.is_running():
                child.kill()


def test_the_server_skips_work_that_stalls_every_session() -> None:
    """Streamlit's config as the app server reads it (its working directory is the repo root):
    no full garbage collection after each script run and no source watching. Under load they
    took most of the server's CPU while holding the GIL (README, Benchmarks)."""
    code = (
        "from streamlit import config; config.get_config_options(force_reparse=True); "
        "print(config.get_option('runner.postScriptGC'), config.get_option('server.fileWatcherType'))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "none"]
