"""The real default model once per session, and small hand-made SAEs on its sites."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from core.model.loading import LoadedModel, load_model
from core.model.sites import Site
from core.sae.model import SAE, SAEConfig
from core.steering.engine import SaeBank, SaeEntry

D_MODEL = 576


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """On a shared 2-core machine, 2 OpenMP threads under load are ~20x slower than 1."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def steer_atlas(request: pytest.FixtureRequest) -> Path:
    """STEERING_TEST_ATLAS (an atlas already built) or the session's tiny atlas (built once)."""
    given = os.environ.get("STEERING_TEST_ATLAS")
    return Path(given) if given else request.getfixturevalue("tiny_atlas")


@pytest.fixture(scope="session")
def lm() -> LoadedModel:
    return load_model("default")


def random_topk(site: str, d_sae: int = 64, k: int = 8, seed: int = 0) -> SAE:
    g = torch.Generator().manual_seed(seed)
    sae = SAE(SAEConfig(d_in=D_MODEL, d_sae=d_sae, architecture="topk", k=k, hook_name=site))
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(D_MODEL, d_sae, generator=g) / D_MODEL**0.5)
        sae.W_dec.copy_(torch.randn(d_sae, D_MODEL, generator=g))
    return sae


def tied_orthonormal(site: str, d_sae: int = 32, seed: int = 0) -> SAE:
    """ReLU SAE with orthonormal decoder rows and W_enc = W_dec^T: clamping is exact to re-encode."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(D_MODEL, d_sae, generator=g))  # (d, d_sae) orthonormal cols
    cfg = SAEConfig(d_in=D_MODEL, d_sae=d_sae, architecture="standard", hook_name=site)
    cfg.apply_b_dec_to_input = False
    sae = SAE(cfg)
    with torch.no_grad():
        sae.W_enc.copy_(q)
        sae.W_dec.copy_(q.T)
    return sae


def entry(sae: SAE, max_act: float = 4.0) -> SaeEntry:
    sid = sae.cfg.hook_name
    return SaeEntry(sid, Site.parse(sid), sae, torch.full((sae.d_sae,), max_act))


@pytest.fixture
def bank() -> SaeBank:
    """Random TopK SAEs at L2 and L5, a tied orthonormal ReLU SAE at L3."""
    saes = [random_topk("L2/resid_post"), random_topk("L5/resid_post", seed=1)]
    saes.append(tied_orthonormal("L3/resid_post"))
    return SaeBank({s.cfg.hook_name: entry(s) for s in saes})
