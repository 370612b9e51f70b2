"""Decoder-cosine matching recovers planted permutations."""

from __future__ import annotations

import torch

from core.flow.matching import MatchPair, match_all, match_pair, plan_pairs, topk_cosine
from core.model.sites import Site


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def test_permutation_plus_noise_is_matched_exactly() -> None:
    a = _unit(torch.randn(512, 96))  # (n, d)
    perm = torch.randperm(512)
    b = _unit(a[perm] + 0.05 * torch.randn(512, 96))  # b[j] ~ a[perm[j]]
    pair = MatchPair(Site(3, "resid_post"), Site(4, "resid_post"), "R")
    df = match_pair(pair, a, b, k=3, chunk=100)  # chunked on purpose
    back = df[(df.direction == "back") & (df["rank"] == 1)].sort_values("dst_feature")
    assert (back["src_feature"].to_numpy() == perm.numpy()).all()
    fwd = df[(df.direction == "fwd") & (df["rank"] == 1)].sort_values("src_feature")
    assert (fwd["dst_feature"].to_numpy() == torch.argsort(perm).numpy()).all()
    assert back["cosine"].min() > 0.8  # noise of norm ~0.5 per row
    assert len(df) == 2 * 512 * 3 and set(df["rank"]) == {1, 2, 3}


def test_topk_is_sorted_and_matches_dense() -> None:
    q, k = _unit(torch.randn(37, 16)), _unit(torch.randn(50, 16))
    vals, idx = topk_cosine(q, k, 4, chunk=8)
    ref_v, ref_i = (q @ k.T).topk(4, dim=1)
    assert torch.allclose(vals, ref_v, atol=1e-6) and torch.equal(idx, ref_i)
    assert (vals[:, :-1] >= vals[:, 1:]).all()


def test_plan_pairs_default_atlas() -> None:
    sites = [
        Site.parse(s)
        for s in (
            "L12/resid_post",
            "L13/resid_post",
            "L14/resid_post",
            "L15/resid_post",
            "L13/mlp_out",
            "L13/attn_out",
        )
    ]
    got = {(p.src.id, p.dst.id, p.kind) for p in plan_pairs(sites)}
    assert got == {
        ("L12/resid_post", "L13/resid_post", "R"),
        ("L13/mlp_out", "L13/resid_post", "M"),
        ("L13/attn_out", "L13/resid_post", "A"),
        ("L13/resid_post", "L14/resid_post", "R"),
        ("L14/resid_post", "L15/resid_post", "R"),
    }


def test_match_all_without_pairs_is_empty() -> None:
    df = match_all({Site(0, "resid_post"): _unit(torch.randn(4, 8))}, k=2)
    assert df.empty and "cosine" in df.columns
