"""TopK SAE training on real activations of the default model (L12/resid_post)."""

from __future__ import annotations

import inspect
import json
import textwrap
from collections.abc import Iterator

import pytest
import torch
from transformers import PreTrainedTokenizerBase

from core.model.capture import capture
from core.model.loading import load_model
from core.model.sites import Site
from core.sae.model import SAE
from core.sae.quality import reconstruction_metrics
from core.sae.train import (
    Params,
    TrainConfig,
    TrainLog,
    init_params,
    optimiser_step,
    step_losses,
    train_topk,
)

SITE = Site.parse("L12/resid_post")
SEQ = 128
N_SEQ = 72  # 72 × 127 ≈ 9k tokens

PROSE = [
    "The river ran high after the spring rains, and the old stone bridge shook whenever a truck "
    "crossed it. The town council met on Tuesday to discuss repairs, but the budget was thin and "
    "the engineers disagreed about whether the foundations could be saved or had to be rebuilt.",
    "Photosynthesis converts light energy into chemical energy. In the chloroplast, water is split, "
    "oxygen is released, and carbon dioxide is fixed into sugars through the Calvin cycle, which "
    "needs ATP and NADPH produced by the light-dependent reactions.",
    "She opened the letter slowly. It was from her brother, who had left for Canada twelve years "
    "before and had written only twice since. 'I am coming home in May,' it said, 'if you will have me.'",
    "La ville de Lyon est située au confluent du Rhône et de la Saône. Elle est connue pour sa "
    "gastronomie, ses traboules et la fête des Lumières, qui attire chaque année des millions de "
    "visiteurs au début du mois de décembre.",
    "Le gouvernement a présenté mardi un projet de loi sur l'énergie. Les députés de l'opposition "
    "ont critiqué le calendrier, jugé trop lent, tandis que les syndicats demandent des garanties "
    "pour les salariés des centrales thermiques.",
    "Il pleuvait depuis le matin. Dans la cuisine, la grand-mère épluchait des pommes de terre en "
    "racontant, pour la centième fois, l'hiver de 1956 où la neige avait bloqué le village pendant "
    "trois semaines.",
]


def _stdlib_code() -> list[str]:
    return [inspect.getsource(m) for m in (textwrap, json.decoder, inspect)]


def _windows(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> torch.Tensor:
    """Round-robin over the texts' 128-token windows so prose and code are both present."""
    per_text = []
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        if len(ids) < SEQ:  # short prose: repeat it to fill a window
            ids = (ids * (SEQ // len(ids) + 1))[:SEQ]
        per_text.append([ids[i : i + SEQ] for i in range(0, len(ids) - SEQ + 1, SEQ)])
    out: list[list[int]] = []
    while len(out) < N_SEQ and any(per_text):
        for wins in per_text:
            if wins and len(out) < N_SEQ:
                out.append(wins.pop(0))
    return torch.tensor(out)  # (n, SEQ)


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """One thread: barely slower on an idle 2-core machine, far faster on a shared one (OpenMP
    threads stall at barriers when the other core is taken)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def acts() -> torch.Tensor:
    """(N, 576) real L12 residual activations; position 0 dropped (an attention sink ~150× the
    usual norm in SmolLM2, which would dominate every variance)."""
    lm = load_model("default", device="cpu")
    ids = _windows(lm.tokenizer, PROSE + _stdlib_code())
    chunks = [
        capture(lm.model, ids[i : i + 24], None, [SITE])[SITE] for i in range(0, len(ids), 24)
    ]
    x = torch.cat(chunks)[:, 1:]  # (n, SEQ - 1, d)
    return x.reshape(-1, x.shape[-1]).contiguous()


CFG = TrainConfig(d_sae=512, k=16, lr=2e-3, batch_size=512, epochs=3.0, seed=0, device="cpu")


@pytest.fixture(scope="module")
def trained(acts: torch.Tensor) -> tuple[SAE, TrainLog]:
    return train_topk(acts, CFG, hook_name=str(SITE), progress=False)


def test_training_lowers_fvu(acts: torch.Tensor, trained: tuple[SAE, TrainLog]) -> None:
    sae, log = trained
    assert log.fvu[0] > 0.6
    assert log.fvu[-1] < 0.5
    assert log.fvu[-1] < 0.6 * log.fvu[0]
    assert log.n_tokens == int(3.0 * len(acts)) and log.step[-1] == log.n_steps - 1
    assert log.tokens_per_s > 0 and 0.0 <= log.dead_frac <= 1.0
    assert sae.cfg.hook_name == "L12/resid_post" and sae.cfg.k == 16


def test_decoder_rows_are_unit_norm(trained: tuple[SAE, TrainLog]) -> None:
    norms = trained[0].W_dec.norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_sae_works_in_raw_units(acts: torch.Tensor, trained: tuple[SAE, TrainLog]) -> None:
    sae, log = trained
    assert log.norm_scale < 0.5  # L12 residual norms are ~150: the scale was not 1
    m = reconstruction_metrics(sae, acts)
    assert m["fvu"] == pytest.approx(sum(log.fvu[-5:]) / 5, abs=0.1)
    assert m["l0"] <= 16
    x_hat = sae(acts[:256])
    ratio = x_hat.norm(dim=-1).mean() / acts[:256].norm(dim=-1).mean()
    assert 0.6 < float(ratio) < 1.2  # a scale left unfolded would be off by ~6×


def test_deterministic_under_a_seed(acts: torch.Tensor) -> None:
    cfg = TrainConfig(d_sae=256, k=8, batch_size=1024, epochs=0.5, seed=3, device="cpu")
    _, a = train_topk(acts, cfg, progress=False)
    _, b = train_topk(acts, cfg, progress=False)
    _, c = train_topk(acts, TrainConfig(**{**cfg.__dict__, "seed": 4}), progress=False)
    assert a.loss == b.loss and a.fvu == b.fvu
    assert a.loss != c.loss


def _dense_reference(
    p: Params, x: torch.Tensor, k: int, dead: torch.Tensor, m: int
) -> torch.Tensor:
    """The same loss with dense autograd (no custom backward)."""
    xc = x - p.b_dec
    pre = xc @ p.W_enc + p.b_enc  # (B, d_sae)
    v, i = pre.topk(k)
    z = torch.zeros_like(pre).scatter(1, i, v.relu())
    err = x - (z @ p.W_dec + p.b_dec)
    fvu = err.pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    av, ai = pre.masked_fill(~dead, -torch.inf).topk(m)
    e = err.detach()
    e_hat = torch.zeros_like(pre).scatter(1, ai, av.relu()) @ p.W_dec
    return fvu + 0.5 * (e_hat - e).pow(2).sum() / (e - e.mean(0)).pow(2).sum()


def _grad(q: torch.Tensor) -> torch.Tensor:
    assert q.grad is not None
    return q.grad


@pytest.mark.parametrize("sparse", [True, False])
def test_backward_matches_dense_autograd(sparse: bool) -> None:
    x = torch.randn(64, 16) * 3 + 1
    p = init_params(x, TrainConfig(d_sae=48, k=4), torch.Generator().manual_seed(0))
    with torch.no_grad():
        p.b_enc.normal_()
        p.W_enc.add_(0.1 * torch.randn_like(p.W_enc))
    dead = torch.arange(48) % 3 == 0
    out = step_losses(p, x, 4, dead, 6, sparse=sparse)
    (out.fvu + 0.5 * out.auxk).backward()
    ours = [_grad(q).clone() for q in p.all()]
    for q in p.all():
        q.grad = None
    _dense_reference(p, x, 4, dead, 6).backward()
    for g, q in zip(ours, p.all(), strict=True):
        assert torch.allclose(g, _grad(q), atol=1e-6, rtol=1e-5)


def test_auxk_trains_only_dead_latents(acts: torch.Tensor) -> None:
    """Latents marked dead (never selected on this batch) get gradient only from AuxK."""
    x = acts[:128] * (576**0.5 / acts[:128].norm(dim=-1).mean())
    p = init_params(x, TrainConfig(d_sae=1024, k=4), torch.Generator().manual_seed(0))
    out = step_losses(p, x, 4, None, 0)
    dead = torch.ones(1024, dtype=torch.bool)
    dead[out.top_idx.flatten()] = False  # everything this batch's top-k never picked
    assert int(dead.sum()) >= 512

    main = step_losses(p, x, 4, dead, 64)
    assert 0.0 < float(main.auxk.detach()) and torch.equal(main.top_idx, out.top_idx)
    main.fvu.backward()
    assert float(_grad(p.W_dec)[dead].abs().max()) == 0.0  # no main-loss signal for dead latents
    assert float(_grad(p.W_enc)[:, dead].abs().max()) == 0.0
    p.W_dec.grad = p.W_enc.grad = None

    step_losses(p, x, 4, dead, 64).auxk.backward()
    got = _grad(p.W_dec)[dead].abs().sum(-1) > 0  # (n_dead,)
    assert float(got.float().mean()) > 0.5  # most dead latents now get a gradient
    assert float(_grad(p.W_dec)[~dead].abs().max()) == 0.0  # and only they do


def _aux_curve(x: torch.Tensor, coef: float, steps: int = 15) -> list[float]:
    """AuxK loss over a few steps on one batch, with a fixed dead set (not picked at init)."""
    p = init_params(x, TrainConfig(d_sae=1024, k=4), torch.Generator().manual_seed(0))
    dead = torch.ones(1024, dtype=torch.bool)
    dead[step_losses(p, x, 4, None, 0).top_idx.flatten()] = False
    opt = torch.optim.Adam(p.all(), lr=1e-3)
    curve = []
    for _ in range(steps):
        out = step_losses(p, x, 4, dead, 64)
        optimiser_step(p, opt, out.fvu + coef * out.auxk)
        curve.append(float(out.auxk.detach()))
    return curve


def test_auxk_teaches_dead_latents_the_residual(acts: torch.Tensor) -> None:
    """With AuxK on, the dead latents learn to reconstruct the residual; with it off they don't."""
    x = acts[:256] * (576**0.5 / acts[:256].norm(dim=-1).mean())
    on, off = _aux_curve(x, 1 / 32), _aux_curve(x, 0.0)
    assert on[0] == pytest.approx(off[0])
    assert on[-1] < 0.8 * on[0]
    assert off[-1] > on[-1] + 0.1
