"""Co-occurrence counts, phi and Jaccard equal a brute-force dense computation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core.geometry import cooccurrence as cooc
from core.store import geometry_sql


def _brute_phi_jaccard(D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """D (n_windows, d) 0/1 -> phi, jaccard by the 2x2 table of every pair, one at a time."""
    n, d = D.shape
    phi, jac = np.zeros((d, d)), np.zeros((d, d))
    for i in range(d):
        for j in range(d):
            a, b = D[:, i] > 0, D[:, j] > 0
            n11, n10, n01, n00 = (a & b).sum(), (a & ~b).sum(), (~a & b).sum(), (~a & ~b).sum()
            den = np.sqrt(float((n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00)))
            phi[i, j] = (n11 * n00 - n10 * n01) / den if den > 0 else 0.0
            union = n11 + n10 + n01
            jac[i, j] = n11 / union if union else 0.0
    return phi, jac


def _random_binary(n: int = 60, d: int = 14) -> np.ndarray:
    rng = np.random.default_rng(1)
    D = (rng.random((n, d)) < rng.uniform(0.05, 0.6, d)).astype(np.float32)
    D[:, 3] = 0  # never occurs
    D[:, 5] = 1  # occurs everywhere: phi undefined -> 0
    D[:, 7] = D[:, 2]  # perfectly correlated pair
    return D


def test_phi_and_jaccard_equal_brute_force() -> None:
    D = _random_binary()
    win, feat = np.nonzero(D)
    co = cooc.count(cooc.binary_matrix(win, feat, *D.shape))
    phi, jac = _brute_phi_jaccard(D)
    np.testing.assert_allclose(cooc.phi_coefficient(co), phi, atol=1e-12)
    np.testing.assert_allclose(cooc.jaccard(co), jac, atol=1e-12)
    assert co.n == D.shape[0] and co.alive.tolist() == (D.sum(0) > 0).tolist()
    np.testing.assert_allclose(cooc.phi_coefficient(co)[2, 7], 1.0)


def test_sparse_and_blocked_dense_counts_agree() -> None:
    rng = np.random.default_rng(2)
    for density in (0.003, 0.3):  # below / above the switch to dense blocks
        D = (rng.random((700, 40)) < density).astype(np.float32)
        win, feat = np.nonzero(D)
        B = cooc.binary_matrix(win, feat, D.shape[0], D.shape[1])
        co = cooc.count(B, chunk=128)  # several blocks
        np.testing.assert_array_equal(co.n_ij, (D.T @ D).astype(np.int64))
        np.testing.assert_array_equal(co.n_i, D.sum(0).astype(np.int64))


def test_duplicate_firing_pairs_collapse() -> None:
    B = cooc.binary_matrix(np.array([0, 0, 0, 1]), np.array([2, 2, 1, 2]), 3, 4)
    assert B.toarray().tolist() == [[0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]


def test_top_pairs_match_brute_force_ranking() -> None:
    D = _random_binary()
    win, feat = np.nonzero(D)
    co = cooc.count(cooc.binary_matrix(win, feat, *D.shape))
    phi, jac = cooc.phi_coefficient(co), cooc.jaccard(co)
    top = cooc.top_pairs(co, phi, jac, 4)
    for f, grp in top.groupby("feature"):
        i = int(str(f))
        cand = [j for j in range(D.shape[1]) if j != i and (D[:, i] * D[:, j]).sum() > 0]
        want = sorted(cand, key=lambda j: (-phi[i, j], j))[:4]
        assert grp.sort_values("rank")["other"].tolist() == want
        assert grp["rank"].tolist() == list(range(1, len(want) + 1))
    assert 3 not in set(top["feature"]) | set(top["other"])  # never occurs: no partners


def test_window_firing_sql_equals_pandas(make_atlas: Any) -> None:
    syn = make_atlas(n_docs=30, per_group=10)
    wins = geometry_sql.windows(syn.con, 16, 8)
    assert len(wins) == 30 * 3
    for thr, rel in ((0.0, False), (2.0, False), (0.5, True)):
        got = geometry_sql.window_firing(syn.con, wins, "L1/resid_post", 16, thr, rel)
        acts = syn.con.execute("SELECT * FROM activations").df()
        cut = thr * 3.0 if rel else thr  # max_act is 3.0 for every planted feature
        acts = acts[acts["act"] > cut]
        key = pd.DataFrame({"doc_id": wins["doc_id"], "w": wins["w"], "win": np.arange(len(wins))})
        want = acts.assign(w=acts["pos"] // 16).merge(key, on=["doc_id", "w"])
        want = set(zip(want["win"], want["feature"], strict=True))
        assert set(zip(got["win"], got["feature"], strict=True)) == want


def test_short_trailing_windows_are_dropped(make_atlas: Any) -> None:
    syn = make_atlas(n_docs=4, per_group=5, window=16, wins_per_doc=3)  # 48 tokens a doc
    assert len(geometry_sql.windows(syn.con, 20, 10)) == 4 * 2  # 20 + 20 + 8: the 8 is dropped
    assert len(geometry_sql.windows(syn.con, 100, 60)) == 4  # a doc's only window is kept
