"""Spatial-modularity statistics: far above random on planted structure, z ~ 0 on random."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import adjusted_mutual_info_score, mutual_info_score

from core.geometry import cooccurrence as cooc
from core.geometry import lobes, spatial
from core.store import geometry_sql


def _lobes_and_decoder(syn: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    wins = geometry_sql.windows(syn.con, 16, 8)
    fire = geometry_sql.window_firing(syn.con, wins, "L1/resid_post", 16, 0.0, False)
    co = cooc.count(
        cooc.binary_matrix(
            fire["win"].to_numpy(), fire["feature"].to_numpy(), len(wins), len(syn.truth)
        )
    )
    lab = lobes.cooccurrence_lobes(cooc.phi_coefficient(co), co.alive, [k], seed=0)[k]
    return lab[co.alive], syn.decoders["L1/resid_post"][co.alive]


def test_angular_similarity_range() -> None:
    u = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    np.testing.assert_allclose(
        spatial.angular_similarity(u), [[1, 0.5, 0], [0.5, 1, 0.5], [0, 0.5, 1]], atol=1e-7
    )


def test_planted_lobes_are_spatial(make_atlas: Any) -> None:
    lab, unit = _lobes_and_decoder(make_atlas(), 4)
    geo = spatial.geometric_clusters(unit, [4], seed=0)[4]
    ami = spatial.ami_zscore(geo, lab, n_perm=100, seed=0)
    assert ami.value > 0.9 and ami.z is not None and ami.z > 20
    assert abs(ami.baseline_mean) < 0.05
    lr = spatial.logreg_vs_gaussian(unit, lab, 0.2, n_gaussian=2, seed=0)
    assert lr.value > 0.9 and lr.baseline_mean < 0.5


def test_random_structure_gives_z_near_zero(make_atlas: Any) -> None:
    zs = []
    for seed in (0, 1, 2):
        lab, unit = _lobes_and_decoder(make_atlas(planted=False, seed=seed), 4)
        geo = spatial.geometric_clusters(unit, [4], seed=0)[4]
        z = spatial.ami_zscore(geo, lab, n_perm=100, seed=0).z
        assert z is not None
        zs.append(z)
    assert max(abs(z) for z in zs) < 3.5, zs


def test_logreg_split_survives_tiny_classes() -> None:
    rng = np.random.default_rng(0)
    y = np.array([0] * 30 + [1] * 30 + [5])  # one class with a single member, a gap in labels
    X = rng.standard_normal((len(y), 8)) + y[:, None]
    m = spatial.logreg_vs_gaussian(X, y, 0.2, n_gaussian=1, seed=0)
    assert 0 <= m.value <= 1 and m.z is None  # one Gaussian repeat: no spread, no z


def test_fast_permutation_ami_equals_sklearn() -> None:
    rng = np.random.default_rng(3)
    geo = rng.integers(0, 6, 500)
    lobes = np.where(rng.random(500) < 0.5, geo, rng.integers(0, 4, 500))
    perms = [rng.permutation(lobes) for _ in range(20)]
    want = [adjusted_mutual_info_score(p, geo) for p in perms]
    np.testing.assert_allclose(spatial._ami_null(geo, perms), want, atol=1e-10)
    assert abs(spatial.mutual_info(geo, lobes) - mutual_info_score(geo, lobes)) < 1e-12
