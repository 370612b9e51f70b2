"""Width is a non-event: the blocked / operator / kNN geometry equals the dense reference on
small data, and a 65,536-feature SAE runs without any (d, d) array."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import laplacian
from sklearn.manifold import spectral_embedding
from sklearn.metrics import adjusted_mutual_info_score

from core.geometry import cooccurrence as cooc
from core.geometry import lobes, spatial, spectral
from core.geometry.config import GeometryConfig
from core.geometry.stage import compute_geometry


def _binary(n: int, d: int, density: float, seed: int) -> sp.csr_matrix:
    """(n, d) 0/1 with a dead feature (3), an always-on one (5) and a duplicated one (7 = 2)."""
    rng = np.random.default_rng(seed)
    D = (rng.random((n, d)) < density * rng.uniform(0.2, 2.0, d)).astype(np.float32)
    D[:, 3], D[:, 5], D[:, 7] = 0, 1, D[:, 2]
    return sp.csr_matrix(D)


def test_blocked_top_partners_equal_dense_top_pairs() -> None:
    for density in (0.004, 0.05, 0.4):  # sparse-cell blocks, mixed, dense slabs
        B = _binary(600, 90, density, seed=1)
        co = cooc.count(B)
        want = cooc.top_pairs(co, cooc.phi_coefficient(co), cooc.jaccard(co), 6)
        assert len(want) > 50
        for cells in (200, 1 << 22):  # many blocks of two features, one block
            got = cooc.top_partners(B, 6, block_cells=cells)
            assert got.equals(want), (density, cells)


def test_phi_operator_equals_dense_phi_plus_one() -> None:
    B = _binary(300, 60, 0.1, seed=2)
    co = cooc.count(B)
    A = cooc.phi_coefficient(co) + 1.0  # (d, d), phi 0 on the dead and always-on rows
    assert A[3].tolist() == [1.0] * 60 and A[5].tolist() == [1.0] * 60
    aff = spectral.PhiAffinity(B)
    X = np.random.default_rng(0).standard_normal((60, 4))
    np.testing.assert_allclose(aff.matmat(X), A @ X, atol=1e-10)
    np.testing.assert_allclose(aff.diagonal(), np.diag(A), atol=1e-12)
    # the normalised operator is I − scipy's normalised Laplacian (diagonal of A ignored)
    M, _ = spectral.normalised(aff)
    L = laplacian(A, normed=True)
    np.testing.assert_allclose(M.matmat(np.eye(60)), np.eye(60) - L, atol=1e-10)


def test_operator_embedding_equals_sklearn_spectral_embedding() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 5)) + np.repeat(rng.standard_normal((4, 5)) * 3, 30, axis=0)
    A = np.exp(-((X[:, None] - X[None]) ** 2).sum(-1) / 10)  # (120, 120)
    want = spectral_embedding(A, n_components=4, random_state=3, drop_first=False)
    got = spectral.embedding(spectral.DenseAffinity(A), 4, seed=3)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert (spectral.labels(spectral.DenseAffinity(A), [4], 3)[4]
            == lobes.spectral_labels(A, [4], 3)[4]).all()  # fmt: skip


def test_operator_lobes_equal_dense_lobes(make_atlas: Any) -> None:
    syn = make_atlas(per_group=40)
    for B in (_binary(400, 150, 0.08, seed=4), _planted_B(syn)):
        co = cooc.count(B)
        dense = lobes.cooccurrence_lobes(cooc.phi_coefficient(co), co.alive, [2, 4, 8], seed=0)
        new = lobes.operator_lobes(B, [2, 4, 8], seed=0)
        for k in (2, 4, 8):
            assert adjusted_mutual_info_score(dense[k], new[k]) > 0.999, k
            assert (new[k][~co.alive] == -1).all()


def _planted_B(syn: Any) -> sp.csr_matrix:
    from core.store import geometry_sql

    wins = geometry_sql.windows(syn.con, 16, 8)
    fire = geometry_sql.window_firing(syn.con, wins, "L1/resid_post", 16, 0.0, False)
    return cooc.binary_matrix(
        fire["win"].to_numpy(), fire["feature"].to_numpy(), len(wins), len(syn.truth)
    )


def test_lowrank_graph_is_the_dense_angular_affinity_when_complete() -> None:
    rng = np.random.default_rng(5)
    unit = rng.standard_normal((80, 12))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    aff = spatial.angular_graph(unit, k=79, lowrank=True)  # every pair is a "neighbour"
    dense = spatial.angular_similarity(unit)
    X = rng.standard_normal((80, 3))
    np.testing.assert_allclose(aff.matmat(X), dense @ X, atol=1e-9)
    np.testing.assert_allclose(aff.diagonal(), np.ones(80), atol=1e-12)


def test_geo_clusters_agree_with_dense(make_atlas: Any) -> None:
    unit = make_atlas(per_group=50, d_in=64).decoders["L1/resid_post"]
    dense = spatial.geometric_clusters(unit, [4, 8], 0, "dense")
    for method in ("knn", "knn_lowrank"):
        got = spatial.geometric_clusters(unit, [4, 8], 0, method, k=15)
        assert adjusted_mutual_info_score(dense[4], got[4]) > 0.95, method


def test_dense_and_sparse_methods_give_the_same_stage_lobes(make_atlas: Any) -> None:
    syn = make_atlas(n_docs=60)
    base = dict(window=16, min_window_tokens=8, lobe_ks=(2, 4), default_k=4, stats_ks=(4,),
                n_permutations=5, umap_epochs=10, entropy_dims=10, spectrum_ranks=(3, 20))  # fmt: skip
    kinds = {s: "resid_post" for s in syn.decoders}
    runs = [
        compute_geometry(syn.con, syn.decoders, kinds, GeometryConfig(**base, **m))[0]  # type: ignore[arg-type]
        for m in ({"lobe_method": "dense", "geo_method": "dense"}, {})
    ]
    a, b = (r["feature_lobes"].sort_values(["k", "feature"]) for r in runs)
    for k in (2, 4):
        assert adjusted_mutual_info_score(a[a.k == k]["lobe"], b[b.k == k]["lobe"]) > 0.999
        assert (
            adjusted_mutual_info_score(a[a.k == k]["geo_cluster"], b[b.k == k]["geo_cluster"]) > 0.9
        )
    assert runs[0]["cooccurrence"].equals(runs[1]["cooccurrence"])


_WIDTH = """
import json, resource, time
from threadpoolctl import threadpool_limits
import numpy as np
from core.geometry import cooccurrence as cooc, lobes, spatial
threadpool_limits(1)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, after the imports
d, n_win, per_win, d_in = 65536, 64, 400, 64
rng = np.random.default_rng(0)
topic = rng.integers(0, 8, n_win)  # bursty: a window's features come mostly from its topic
own = topic[:, None] * (d // 8) + rng.integers(0, d // 8, (n_win, per_win))
cols = np.where(rng.random((n_win, per_win)) < 0.8, own, rng.integers(0, d, (n_win, per_win)))
B = cooc.binary_matrix(np.repeat(np.arange(n_win), per_win), cols.ravel(), n_win, d)
t0 = time.process_time()
pairs = cooc.top_partners(B, 10)
lab = lobes.operator_lobes(B, [8], 0)[8]
alive = lab >= 0
unit = rng.standard_normal((d, d_in))
unit /= np.linalg.norm(unit, axis=1, keepdims=True)
geo = spatial.geometric_clusters(unit[alive], [8], 0, "knn_lowrank", 30)[8]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"delta_bytes": (peak - base) * 1024, "alive": int(alive.sum()),
                  "pairs": len(pairs), "lobes": len(set(lab[alive])), "geo": len(set(geo)),
                  "cpu_s": time.process_time() - t0}))
"""


def test_65536_features_without_a_dense_square() -> None:
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run(
        [sys.executable, "-c", _WIDTH], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    d = 65536
    # a (d, d) float32 alone would be 16 GiB; gathering the decoder rows of all ~10^6 kNN pairs
    # at once would be ~1 GiB
    assert out["delta_bytes"] < 0.75 * 2**30, out
    assert out["delta_bytes"] < d * d * 4 / 10
    assert out["alive"] > 10_000 and out["pairs"] == 10 * out["alive"]
    assert out["lobes"] == 8 and out["geo"] == 8
