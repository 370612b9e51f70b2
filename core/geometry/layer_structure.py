"""Galaxy-scale structure of a layer's decoder point cloud (METHODS §5).

Eigen-spectrum: eigenvalues of the covariance of the decoder rows; a power law λ ∝ rank^slope is
fitted on ranks 10–150 (log-log least squares, 95 % CI from the slope's standard error), with the
same fit on isotropic Gaussian rows of the same shape (the Wishart / Marchenko–Pastur reference).

Clustering entropy: z-score the rows' coordinates, PCA to 100 dimensions, estimate the entropy
with the Kozachenko–Leonenko kNN estimator, and compare with the same estimator on samples of a
Gaussian with the same covariance (same n, same dims, so the estimator's bias cancels).
Clustering entropy = H(Gaussian) − H(data): 0 for a Gaussian, larger when the cloud is clumpier.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.special import digamma, gammaln
from sklearn.neighbors import NearestNeighbors

from core.geometry.spatial import Measured


def covariance_spectrum(X: np.ndarray) -> np.ndarray:
    """(n, d) rows -> (d,) covariance eigenvalues, descending. O(n·d²) time, O(n·d + d²) memory."""
    eig = np.linalg.eigvalsh(np.cov(X.astype(np.float64), rowvar=False))
    return np.clip(eig[::-1], 0.0, None)


def power_law_fit(eig: np.ndarray, lo: int, hi: int) -> dict[str, float]:
    """Fit log λ = a + slope·log rank on ranks lo..hi (1-based, inclusive, clipped to the data)."""
    hi = min(hi, int((eig > 0).sum()))
    rank = np.arange(lo, hi + 1)
    if len(rank) < 3:
        raise ValueError(f"too few positive eigenvalues for a fit on ranks {lo}..{hi}")
    fit = stats.linregress(np.log(rank), np.log(eig[rank - 1]))
    half = stats.t.ppf(0.975, len(rank) - 2) * fit.stderr
    return {
        "slope": float(fit.slope),
        "stderr": float(fit.stderr),
        "ci_low": float(fit.slope - half),
        "ci_high": float(fit.slope + half),
        "intercept": float(fit.intercept),
        "r2": float(fit.rvalue**2),
        "rank_lo": lo,
        "rank_hi": hi,
    }


def spectrum_vs_gaussian(
    X: np.ndarray, lo: int, hi: int, seed: int
) -> tuple[Measured, np.ndarray, np.ndarray]:
    """Slope of the decoder spectrum vs a Gaussian cloud of X's shape; also both spectra,
    the Gaussian one scaled to the same total variance (for plotting)."""
    eig = covariance_spectrum(X)
    g = covariance_spectrum(np.random.default_rng(seed).standard_normal(X.shape))
    g *= eig.sum() / max(g.sum(), 1e-30)
    fit, gfit = power_law_fit(eig, lo, hi), power_law_fit(g, lo, hi)
    m = Measured(
        fit["slope"],
        gfit["slope"],
        float(np.hypot(fit["stderr"], gfit["stderr"])),
        {**fit, "gaussian": gfit},
    )
    return m, eig, g


def knn_entropy(X: np.ndarray, k: int) -> float:
    """Kozachenko–Leonenko estimate (nats) of the differential entropy of (n, d) samples
    (sklearn's neighbour search in bounded chunks: O(n²·d) time, O(n·k) memory):
    ψ(n) − ψ(k) + log V_d + (d/n) Σ log r_k(i), r_k the distance to the k-th neighbour."""
    n, d = X.shape
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X)  # (n, k+1), self first
    r = np.maximum(dist[:, k], 1e-12)
    log_vd = (d / 2) * np.log(np.pi) - gammaln(d / 2 + 1)
    return float(digamma(n) - digamma(k) + log_vd + d * np.log(r).mean())


def pca_zscored(X: np.ndarray, dims: int) -> np.ndarray:
    """(n, d) -> (n, min(dims, d, n-1)): z-score each coordinate, project on top principal axes.

    The axes come from the (d, d) scatter matrix ZᵀZ, not an SVD of Z, whose (n, d) left factor
    would double the memory at 65k features. O(n·d²) time, O(n·d) memory."""
    X = X.astype(np.float64)
    sd = X.std(axis=0)
    Z = (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    w, v = np.linalg.eigh(Z.T @ Z)  # ascending eigenvalues, columns of v the axes
    axes = v[:, np.argsort(-w, kind="stable")]  # (d, d) by variance, descending
    return Z @ axes[:, : min(dims, Z.shape[1], Z.shape[0] - 1)]


def clustering_entropy(X: np.ndarray, dims: int, k: int, n_gaussian: int, seed: int) -> Measured:
    """H(Gaussian, same covariance) − H(data) after z-scoring and PCA; baseline 0 with the spread
    of the Gaussian estimate over `n_gaussian` samples."""
    Y = pca_zscored(X, dims)  # (n, dims), covariance diagonal
    h = knn_entropy(Y, k)
    sd = Y.std(axis=0)
    rng = np.random.default_rng(seed)
    hg = np.array(
        [knn_entropy(rng.standard_normal(Y.shape) * sd, k) for _ in range(max(n_gaussian, 1))]
    )
    analytic = 0.5 * (
        Y.shape[1] * np.log(2 * np.pi * np.e) + 2 * np.log(np.maximum(sd, 1e-300)).sum()
    )
    spread = float(hg.std(ddof=1)) if len(hg) > 1 else 0.0
    return Measured(
        float(hg.mean() - h),
        0.0,
        spread,
        {
            "h_data": h,
            "h_gaussian": hg.tolist(),
            "h_gaussian_analytic": float(analytic),
            "dims": Y.shape[1],
            "k": k,
            "n": Y.shape[0],
        },
    )
