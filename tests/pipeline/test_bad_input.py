"""Bad input gets a clear error, and an existing atlas is never lost (not even to a killed build)."""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
import torch

from core.corpus import CorpusError
from core.model.sites import SiteError
from core.pipeline.config import BuildConfig, SaeSpec, tiny_profile
from core.pipeline.run import build
from core.sae.formats import save_saelens
from core.sae.model import SAE, SAEConfig, SAEError
from core.store.atlas import tmp_path

REPO = Path(__file__).resolve().parents[2]


def _random_sae(folder: Path, d_in: int, site: str, d_sae: int = 128) -> Path:
    sae = SAE(SAEConfig(d_in=d_in, d_sae=d_sae, architecture="topk", k=8, hook_name=site))
    with torch.no_grad():
        sae.W_enc.normal_(0, d_in**-0.5)
        sae.W_dec.copy_(sae.W_enc.T)
    return save_saelens(sae, folder)


def _cfg(
    out: Path, sae_path: Path, site: str = "L3/resid_post", corpus: str = "default"
) -> BuildConfig:
    cfg = tiny_profile(str(out))
    cfg.saes = [SaeSpec(site, str(sae_path))]
    cfg.corpus.spec = corpus
    cfg.corpus.n_tokens = 1500
    return cfg


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def given_sae(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _random_sae(tmp_path_factory.mktemp("sae") / "sae", 576, "L3/resid_post")


@pytest.fixture(scope="module")
def small_atlas(tmp_path_factory: pytest.TempPathFactory, given_sae: Path) -> Path:
    """A finished atlas built from a given (not trained) SAE: the one that must never be lost."""
    return build(_cfg(tmp_path_factory.mktemp("small") / "atlas.duckdb", given_sae))


def test_sae_width_mismatch_names_file_and_widths(tmp_path: Path, small_atlas: Path) -> None:
    bad = _random_sae(tmp_path / "narrow", 100, "L3/resid_post")
    before = _digest(small_atlas)
    with pytest.raises(SAEError, match=r"(?s)narrow.*100.*576"):
        build(_cfg(small_atlas, bad), overwrite={"capture"})
    assert _digest(small_atlas) == before


def test_unknown_site(tmp_path: Path, given_sae: Path) -> None:
    with pytest.raises(SiteError, match="L99/resid_post"):
        build(_cfg(tmp_path / "a.duckdb", given_sae, site="L99/resid_post"))
    with pytest.raises(SiteError, match="unknown SAE site"):
        build(_cfg(tmp_path / "a.duckdb", given_sae, site="L3/residual"))


def test_corrupt_safetensors(tmp_path: Path, given_sae: Path) -> None:
    bad = tmp_path / "corrupt"
    shutil.copytree(given_sae, bad)
    weights = bad / "sae_weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(SAEError, match="sae_weights.safetensors"):
        build(_cfg(tmp_path / "a.duckdb", bad))


def test_empty_corpus(tmp_path: Path, given_sae: Path) -> None:
    corpus = tmp_path / "texts"
    corpus.mkdir()
    (corpus / "empty.txt").write_text("   \n")
    with pytest.raises(CorpusError, match="empty|no .*document"):
        build(_cfg(tmp_path / "a.duckdb", given_sae, corpus=str(corpus)))


def test_non_utf8_corpus(tmp_path: Path, given_sae: Path) -> None:
    corpus = tmp_path / "latin1.txt"
    corpus.write_bytes("caf\u00e9 au lait".encode("latin-1"))
    with pytest.raises(CorpusError, match="latin1.txt"):
        build(_cfg(tmp_path / "a.duckdb", given_sae, corpus=str(corpus)))


def test_cli_reports_errors_without_traceback(tmp_path: Path) -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "core.cli",
            "build",
            "--profile",
            "tiny",
            "--out",
            str(tmp_path / "a.duckdb"),
            "--sae",
            "L3/nowhere",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 2
    assert "unknown SAE site" in res.stderr and "Traceback" not in res.stderr


def test_killed_build_keeps_the_atlas_and_resumes(small_atlas: Path, given_sae: Path) -> None:
    before = _digest(small_atlas)
    n_before = (
        duckdb.connect(str(small_atlas), read_only=True)
        .execute("SELECT count(*) FROM examples")
        .fetchone()
    )
    cmd = [
        sys.executable,
        "-m",
        "core.cli",
        "build",
        "--profile",
        "tiny",
        "--out",
        str(small_atlas),
        "--tokens",
        "1500",
        "--sae",
        f"L3/resid_post={given_sae}",
        "--overwrite",
        "capture",
    ]
    old = set(small_atlas.parent.glob("acts-*"))
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    tmp = tmp_path(small_atlas)
    deadline = time.time() + 240
    while time.time() < deadline and not set(small_atlas.parent.glob("acts-*")) - old:
        time.sleep(0.05)  # wait until the new run has started writing its side files
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert tmp.exists(), "the interrupted build keeps its temporary atlas for resuming"
    assert _digest(small_atlas) == before  # the finished atlas is untouched...
    con = duckdb.connect(str(small_atlas), read_only=True)  # ...and still opens and answers
    assert con.execute("SELECT count(*) FROM examples").fetchone() == n_before
    con.close()
    res = subprocess.run(cmd[:-2], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "corpus: done earlier" in res.stderr  # resumed, not restarted
    assert not tmp.exists()
    con = duckdb.connect(str(small_atlas), read_only=True)
    assert con.execute("SELECT count(*) FROM examples").fetchone()[0] > 0
