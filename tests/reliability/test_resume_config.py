"""A build resumes (or reuses the stages of) an atlas only when it was made with the same config;
otherwise it refuses, naming the differing fields, and `--overwrite corpus` starts over."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import torch

from core.pipeline.config import tiny_profile
from core.pipeline.run import ResumeMismatch, build, config_differences
from core.sae.formats import save_saelens
from core.sae.model import SAE, SAEConfig
from core.store.atlas import tmp_path as tmp_of
from tests.reliability.atlas_files import copy_atlas, listing

REPO = Path(__file__).resolve().parents[2]
TEXT_A = "The river runs past the old mill and into the valley. " * 40
TEXT_B = "Les enfants jouent dans le jardin pendant que le soleil brille. " * 40


def _sae(folder: Path, d_in: int) -> Path:
    sae = SAE(SAEConfig(d_in=d_in, d_sae=64, architecture="topk", k=8, hook_name="L3/resid_post"))
    with torch.no_grad():
        sae.W_enc.normal_(0, d_in**-0.5)
        sae.W_dec.copy_(sae.W_enc.T)
    return save_saelens(sae, folder)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_operational_fields_are_not_compared() -> None:
    a, b = tiny_profile("/a/atlas.duckdb"), tiny_profile("/b/atlas.duckdb")
    b.ray.enabled, b.explain.concurrency = True, 2
    assert config_differences(a.to_dict(), b.to_dict()) == []
    b.corpus.n_tokens, b.stats.n_top = 7, 3
    assert config_differences(a.to_dict(), b.to_dict()) == ["corpus.n_tokens", "stats.n_top"]


def test_a_changed_stage_setting_names_its_stage(tiny_atlas: Path, tmp_path: Path) -> None:
    atlas = copy_atlas(tiny_atlas, tmp_path / "a")
    cfg = tiny_profile(str(atlas))
    cfg.stats.n_top = 3
    with pytest.raises(
        ResumeMismatch,
        match=r"differs in: stats\.n_top\); pass --overwrite stats "
        "to re-run from that stage, or --overwrite corpus to start over",
    ):
        build(cfg)
    assert not tmp_of(atlas).exists()


def test_a_finished_atlas_refuses_another_corpus(tiny_atlas: Path, tmp_path: Path) -> None:
    atlas = copy_atlas(tiny_atlas, tmp_path / "a")
    (tmp_path / "b.txt").write_text(TEXT_B)
    cfg = tiny_profile(str(atlas))
    cfg.corpus.spec = str(tmp_path / "b.txt")
    before, digest = listing(atlas.parent), _digest(atlas)
    with pytest.raises(ResumeMismatch) as err:
        build(cfg)
    assert str(err.value) == (
        f"{atlas} was built with a different config (differs in: corpus.spec); pass "
        "--overwrite corpus to start over"
    )
    assert listing(atlas.parent) == before and _digest(atlas) == digest  # no .tmp, no change


def _cli(
    out: Path, corpus: Path, sae: Path, *extra: str, kill_at: str = ""
) -> subprocess.CompletedProcess[str]:
    args = ["--profile", "tiny", "--out", str(out), "--corpus", str(corpus), "--tokens", "1500"]
    return subprocess.run(
        [sys.executable, "-m", "core.cli", "build", *args, "--sae", f"L3/resid_post={sae}", *extra],
        cwd=REPO,
        env=dict(os.environ, SAE_ATLAS_KILL_AT=kill_at),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_killed_build_is_not_resumed_with_another_corpus(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text(TEXT_A)
    (tmp_path / "b.txt").write_text(TEXT_B)
    out = tmp_path / "atlas" / "atlas.duckdb"
    sae = _sae(tmp_path / "sae", 576)
    killed = _cli(out, tmp_path / "a.txt", sae, kill_at="after:corpus")
    assert killed.returncode == -9
    assert tmp_of(out).exists()  # kept as a resumable state
    before = listing(out.parent)
    refused = _cli(out, tmp_path / "b.txt", sae)
    assert refused.returncode == 2
    assert refused.stderr == (
        f"sae-atlas build: error: {out} was built with a different config (differs in: "
        "corpus.spec); pass --overwrite corpus to start over\n"
    )
    assert listing(out.parent) == before  # nothing touched
    done = _cli(out, tmp_path / "b.txt", sae, "--overwrite", "corpus")
    assert done.returncode == 0, done.stderr[-2000:]
    con = duckdb.connect(str(out), read_only=True)
    tokens = con.execute("SELECT token_str FROM tokens ORDER BY doc_id, pos").fetchall()
    spec = con.execute("SELECT config->>'$.corpus.spec' FROM runs").fetchone()[0]
    con.close()
    text = "".join(r[0] for r in tokens)
    assert "enfants" in text and "river" not in text  # an atlas of the corpus asked for
    assert spec == str(tmp_path / "b.txt")
    # one run's side files: the killed run's folders are gone, no .tmp, no work-*
    assert sorted(p.name.split("-")[0] for p in out.parent.iterdir()) == [
        "acts",
        "atlas.duckdb",
        "atlas.duckdb.vectors",  # the atlas, its activations and index
    ]
