"""Layer-scale structure: power-law slopes recovered, kNN entropy calibrated."""

from __future__ import annotations

import numpy as np

from core.geometry import layer_structure as ls


def test_power_law_fit_exact_on_a_pure_power_law() -> None:
    eig = np.arange(1, 301, dtype=float) ** -1.3
    fit = ls.power_law_fit(eig, 10, 150)
    assert abs(fit["slope"] + 1.3) < 1e-9 and fit["r2"] > 0.999999
    assert fit["ci_low"] <= fit["slope"] <= fit["ci_high"]
    assert ls.power_law_fit(eig[:100], 10, 150)["rank_hi"] == 100  # clipped to the data


def test_spectrum_slope_recovered_from_samples() -> None:
    rng = np.random.default_rng(0)
    d = 200
    scale = np.arange(1, d + 1) ** (-1.2 / 2)  # covariance eigenvalues rank^-1.2
    X = rng.standard_normal((20000, d)) * scale @ np.linalg.qr(rng.standard_normal((d, d)))[0]
    m, eig, g = ls.spectrum_vs_gaussian(X, 10, 150, seed=0)
    assert abs(m.value + 1.2) < 0.1
    assert abs(m.baseline_mean) < 0.2  # Gaussian rows: nearly flat spectrum
    assert m.z is not None and m.z < -10
    assert eig.shape == g.shape == (d,) and np.isclose(eig.sum(), g.sum())


def test_knn_entropy_matches_gaussian_closed_form() -> None:
    rng = np.random.default_rng(0)
    sd = np.array([0.5, 1.0, 2.0, 1.5, 0.8])
    X = rng.standard_normal((4000, 5)) * sd
    analytic = 0.5 * (5 * np.log(2 * np.pi * np.e) + 2 * np.log(sd).sum())
    assert abs(ls.knn_entropy(X, 3) - analytic) < 0.15


def test_clustering_entropy_positive_for_clusters_and_null_for_gaussian() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((10, 30)) * 4
    clumped = centres[rng.integers(0, 10, 1500)] + rng.standard_normal((1500, 30))
    c = ls.clustering_entropy(clumped, 20, 3, n_gaussian=3, seed=0)
    g = ls.clustering_entropy(rng.standard_normal((1500, 30)), 20, 3, n_gaussian=3, seed=0)
    assert c.value > 5 and c.z is not None and c.z > 10
    assert abs(g.value) < 1.0
