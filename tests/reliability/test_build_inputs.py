"""`sae-atlas build` with an impossible input: one line `sae-atlas build: error: …`, exit code 2,
no traceback, and no file created (the check runs before anything loads or is written)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.pipeline.config import tiny_profile
from core.pipeline.run import BuildInputError, check_inputs

REPO = Path(__file__).resolve().parents[2]

CASES = {
    "missing model path": (
        ["--model", "/nonexistent"],
        "--model '/nonexistent': no such file or folder (nor a hub id)",
    ),
    "missing gguf": (
        ["--model", "weights/model.gguf"],
        "--model 'weights/model.gguf': no such file or folder (nor a hub id)",
    ),
    "nonsense device": (
        ["--device", "nonsense"],
        "model.device 'nonsense' is not a device: use auto, cpu, cuda, cuda:N or mps",
    ),
    "out under a file": (
        ["--out", "/dev/null/x.duckdb"],
        "--out /dev/null/x.duckdb: cannot create its folder (/dev/null is not a folder)",
    ),
    "negative k": (["--k", "-1"], "need 0 < k < d_sae, got k=-1, d_sae=256"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_build_input_is_one_clear_line(case: str, tmp_path: Path) -> None:
    args, message = CASES[case]
    out = ["--out", str(tmp_path / "out" / "atlas.duckdb")] if "--out" not in args else []
    res = subprocess.run(
        [sys.executable, "-m", "core.cli", "build", "--profile", "tiny", *out, *args],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 2
    assert res.stderr == f"sae-atlas build: error: {message}\n"
    assert res.stdout == ""
    assert list(tmp_path.iterdir()) == []  # nothing created: no out folder, no .tmp, no acts-*


def test_an_existing_folder_is_not_an_atlas_path(tmp_path: Path) -> None:
    with pytest.raises(BuildInputError, match="is a folder; give the atlas file"):
        check_inputs(tiny_profile(str(tmp_path)))


def test_a_plausible_hub_id_passes_the_check(tmp_path: Path) -> None:
    cfg = tiny_profile(str(tmp_path / "atlas.duckdb"))
    cfg.model.spec = "HuggingFaceTB/SmolLM2-135M"
    check_inputs(cfg)  # loading it needs the network later; the name itself is fine
    assert list(tmp_path.iterdir()) == []
