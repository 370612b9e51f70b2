"""SAE quality metrics: FVU / L0 / dead fraction on hand-built SAEs, CE splicing on the real model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from core.model.loading import LoadedModel, load_model
from core.model.sites import Site
from core.sae.model import SAE, SAEConfig
from core.sae.quality import ce_metrics, reconstruction_metrics

D = 8


def identity_sae(d: int) -> SAE:
    """Standard ReLU SAE with W_enc = [I, −I], W_dec = [I; −I], no biases: relu(x) − relu(−x) = x."""
    sae = SAE(SAEConfig(d_in=d, d_sae=2 * d, architecture="standard"))
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))  # (d, 2d)
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))  # (2d, d)
    return sae


def mean_sae(mean: torch.Tensor, d_sae: int = 4) -> SAE:
    """Every latent off (W_enc = 0, b_enc = 0); x̂ = b_dec = the data mean."""
    sae = SAE(SAEConfig(d_in=mean.shape[0], d_sae=d_sae, architecture="standard"))
    with torch.no_grad():
        sae.b_dec.copy_(mean)
    return sae


def test_fvu_is_zero_for_an_exact_reconstruction() -> None:
    x = torch.randn(300, D) * 3 + 1
    m = reconstruction_metrics(identity_sae(D), x, batch_size=64)
    assert m["fvu"] == pytest.approx(0.0, abs=1e-10)
    assert m["n_tokens"] == 300


def test_fvu_is_one_for_the_mean_predictor() -> None:
    x = torch.randn(500, D) * torch.arange(1, D + 1) + 5.0
    m = reconstruction_metrics(mean_sae(x.double().mean(0).float()), x, batch_size=128)
    assert m["fvu"] == pytest.approx(1.0, abs=1e-5)
    assert m["l0"] == 0.0
    assert m["dead_frac"] == 1.0


def test_l0_and_dead_fraction_on_a_hand_built_case() -> None:
    x = torch.randn(200, D)
    x[:, 0] = (
        x[:, 0].abs() + 0.1
    )  # coordinate 0 always positive: latent D (its −x part) never fires
    x[:, 1] = 0.0  # coordinate 1 always zero: neither latent 1 nor latent D + 1 fires
    m = reconstruction_metrics(identity_sae(D), x.numpy(), batch_size=50)
    assert m["l0"] == pytest.approx(D - 1)  # one of each ± pair fires, except for coordinate 1
    assert m["dead_frac"] == pytest.approx(3 / (2 * D))
    assert m["fvu"] == pytest.approx(0.0, abs=1e-10)


def test_topk_l0_counts_only_positive_activations() -> None:
    sae = SAE(SAEConfig(d_in=D, d_sae=6, architecture="topk", k=3))
    with torch.no_grad():
        sae.b_enc.copy_(torch.tensor([1.0, 2.0, -1.0, -2.0, -3.0, -4.0]))  # W_enc = 0
    m = reconstruction_metrics(sae, torch.randn(10, D))
    assert m["l0"] == 2.0  # the third selected latent is relu'd to 0
    assert m["dead_frac"] == pytest.approx(4 / 6)


@pytest.fixture(scope="module")
def lm() -> Iterator[LoadedModel]:
    # Tiny forwards: one thread is as fast, and immune to the OpenMP stalls of a shared machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_model("default", device="cpu")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def batch(lm: LoadedModel) -> tuple[torch.Tensor, torch.Tensor]:
    texts = [
        "The quick brown fox jumps over the lazy dog. It was a sunny day in the park.",
        "La capitale de la France est Paris, une ville célèbre pour ses musées.",
        "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    ]
    enc = lm.tokenizer(texts, return_tensors="pt", padding=True)
    return enc["input_ids"], enc["attention_mask"]  # (3, T), right-padded


def test_ce_metrics_on_the_real_model(
    lm: LoadedModel, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    ids, mask = batch
    assert (mask == 0).any()  # padding is present and must be masked
    d = lm.model.config.hidden_size
    sites = [Site(3, "resid_post"), Site(5, "mlp_out")]
    out = ce_metrics(lm.model, ids, mask, {s: identity_sae(d) for s in sites}, batch_size=2)
    for site in sites:
        r = out[site]
        assert 0.5 < r["ce_base"] < 10
        assert r["ce_zero_ablation"] > r["ce_base"] + 0.1
        assert r["ce_spliced"] == pytest.approx(r["ce_base"], abs=1e-4)
        assert r["ce_increase"] == pytest.approx(0.0, abs=1e-4)
        assert r["frac_loss_recovered"] == pytest.approx(1.0, abs=1e-3)
    assert out[sites[0]]["ce_base"] == out[sites[1]]["ce_base"]


def test_ce_metrics_mean_predictor_recovers_less(
    lm: LoadedModel, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    ids, mask = batch
    site = Site(3, "resid_post")
    bad = mean_sae(torch.zeros(lm.model.config.hidden_size))  # reconstructs zeros: = ablation
    r = ce_metrics(lm.model, ids, mask, {site: bad}, start=0)[site]
    assert r["ce_spliced"] == pytest.approx(r["ce_zero_ablation"], abs=1e-4)
    assert r["frac_loss_recovered"] == pytest.approx(0.0, abs=1e-3)
