"""kill -9 of a build at every stage boundary and inside capture and stats, each followed by a resume: the atlas the chain of
resumes finishes equals, table by table and bit for bit, the one an uninterrupted build writes.

The build SIGKILLs itself at a named point (SAE_ATLAS_KILL_AT, core/pipeline/faults.py), as a crash or
an out-of-memory kill would. Each resume is killed at the next point, so one chain covers them all.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from core.pipeline.stages import STAGE_NAMES
from core.sae.formats import save_saelens
from core.sae.model import SAE, SAEConfig
from core.store.atlas import tmp_path as tmp_of
from tests.pipeline.test_ray_build import assert_same_atlas

REPO = Path(__file__).resolve().parents[2]
# in the order a build reaches them; 'mid:' points kill inside a stage, after some of its work
MID = {"capture": "mid:capture", "stats": "mid:stats"}
POINTS = [
    "before:corpus",
    *(p for s in STAGE_NAMES for p in ((MID[s],) if s in MID else ()) + (f"after:{s}",)),
    "before:commit",
]


def _build(out: Path, sae: Path, kill_at: str = "") -> subprocess.CompletedProcess[str]:
    args = ["--profile", "tiny", "--out", str(out), "--tokens", "1500"]
    return subprocess.run(
        [sys.executable, "-m", "core.cli", "build", *args, "--sae", f"L3/resid_post={sae}"],
        cwd=REPO,
        env=dict(os.environ, SAE_ATLAS_KILL_AT=kill_at),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_killed_at_every_stage_boundary_resumes_to_the_same_atlas(tmp_path: Path) -> None:
    assert len(POINTS) >= 10
    sae = SAE(SAEConfig(d_in=576, d_sae=64, architecture="topk", k=8, hook_name="L3/resid_post"))
    with torch.no_grad():
        sae.W_enc.normal_(0, 576**-0.5)
        sae.W_dec.copy_(sae.W_enc.T)
    weights = save_saelens(sae, tmp_path / "sae")
    want = tmp_path / "whole" / "atlas.duckdb"
    assert _build(want, weights).returncode == 0
    got = tmp_path / "killed" / "atlas.duckdb"
    for point in POINTS:
        res = _build(got, weights, kill_at=point)
        assert res.returncode == -9, (point, res.stderr[-2000:])
        assert tmp_of(got).exists() and not got.exists(), point
    res = _build(got, weights)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "geometry: done earlier, skipped" in res.stderr
    assert not tmp_of(got).exists()
    assert_same_atlas(got, want)
    assert sorted(p.name.split("-")[0] for p in got.parent.iterdir()) == [
        "acts",
        "atlas.duckdb",
        "atlas.duckdb.vectors",  # the atlas, its activations and index
    ]
