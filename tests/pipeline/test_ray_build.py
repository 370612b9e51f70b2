"""The build on Ray (a local cluster of 2 CPUs, 2 actors) gives the single-process atlas exactly:
also when an actor is SIGKILLed during its shard, and when the driver is killed and resumed."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from core.pipeline.config import BuildConfig, RayConfig, tiny_profile
from core.pipeline.run import build

REPO = Path(__file__).resolve().parents[2]
RAY = RayConfig(enabled=True, actors=2, threads=1, num_cpus=2)
# Per-run bookkeeping and wall-clock columns differ between any two builds.
SKIP_TABLES = {"runs", "stages"}
SKIP_TYPES = ("TIMESTAMP", "TIMESTAMP WITH TIME ZONE")
SKIP_COLUMNS = {"run_id", "weights_path", "train_log"}  # run ids and folders; wall seconds
SKIP_COLUMNS |= {"explanations"}  # feature_cards: each explanation with its `created` time


def _ray_cfg(out: Path) -> BuildConfig:
    return dataclasses.replace(tiny_profile(str(out)), ray=RAY)


def _tables(path: Path) -> dict[str, pd.DataFrame]:
    """Every table of an atlas, rows in a canonical order, without timestamp columns."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        names = [r[0] for r in con.execute("SHOW TABLES").fetchall() if r[0] not in SKIP_TABLES]
        out = {}
        for name in names:
            described = con.execute(f'DESCRIBE "{name}"').fetchall()
            cols = [r[0] for r in described if r[1] not in SKIP_TYPES and r[0] not in SKIP_COLUMNS]
            sel = ", ".join(f'"{c}"' for c in cols)
            out[name] = con.execute(f'SELECT {sel} FROM "{name}" ORDER BY ALL').df()
        return out
    finally:
        con.close()


def assert_same_atlas(got: Path, want: Path) -> None:
    a, b = _tables(got), _tables(want)
    assert sorted(a) == sorted(b)
    for name in sorted(b):
        assert len(a[name]) == len(b[name]), name
        # bit for bit: exact comparison of every float
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)
    for name in ("features", "histograms", "examples", "logits", "neighbours"):
        assert len(b[name]) > 0, f"{name} is empty: the comparison would prove nothing"


def test_ray_build_equals_single_process(tiny_atlas: Path, tmp_path: Path) -> None:
    got = build(_ray_cfg(tmp_path / "atlas.duckdb"))
    parts = list(got.parent.glob("acts-*/*/part-*.parquet"))
    assert len(parts) > 4  # the capture really was cut into several chunks
    assert_same_atlas(got, tiny_atlas)


def test_killed_actor_is_replaced(
    tiny_atlas: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "killed"
    # the actor running shard 1 SIGKILLs itself after its first chunk (once)
    monkeypatch.setenv("SAE_ATLAS_TEST_KILL_SHARD", f"1:{marker}")
    got = build(_ray_cfg(tmp_path / "atlas.duckdb"))
    assert marker.exists(), "no actor was killed: the test proved nothing"
    assert int(marker.read_text()) != os.getpid()
    assert_same_atlas(got, tiny_atlas)


def test_killed_driver_resumes(tiny_atlas: Path, tmp_path: Path) -> None:
    out = tmp_path / "atlas.duckdb"
    cmd = [
        sys.executable,
        "-m",
        "core.cli",
        "build",
        "--profile",
        "tiny",
        "--out",
        str(out),
        "--ray",
        "--set",
        "ray.actors=2",
        "--set",
        "ray.threads=1",
        "--set",
        "ray.num_cpus=2",
    ]
    proc = subprocess.Popen(
        cmd, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 600
    while len(list(tmp_path.glob("acts-*/_done/capture-*"))) < 2:
        assert proc.poll() is None, "the build ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local cluster it started
    proc.wait()
    before = {p: p.stat().st_mtime_ns for p in tmp_path.glob("acts-*/_done/capture-*")}
    parts_before = {p: p.stat().st_mtime_ns for p in tmp_path.glob("acts-*/*/part-*.parquet")}
    assert not out.exists() and len(before) >= 2

    got = build(_ray_cfg(out))
    # the chunks finished before the kill were not run again
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    assert all(p.stat().st_mtime_ns == t for p, t in parts_before.items() if p.exists())
    assert_same_atlas(got, tiny_atlas)
