"""Are lobes spatial? Two measurements against random baselines (METHODS §5).

(a) AMI between geometric clusters (spectral clustering of decoder directions on angular
    similarity 1 − arccos(cos)/π) and co-occurrence lobes, as a z-score over label permutations.
    The affinity is never formed at width: `angular_graph` keeps each direction's k nearest
    neighbours (blocks of decoder cosines), symmetrised; the "knn_lowrank" variant adds the
    first-order part 1/2 + cos/π of the dense affinity as the low-rank 11ᵀ/2 + UUᵀ/π and keeps
    the exact remainder on the graph's pairs (arccos is odd around 0, so what is dropped is
    O(|cos|³/6π) on the pairs outside the graph). "dense" is the paper's (d, d) affinity.
(b) Balanced test accuracy of a logistic regression predicting the lobe from the decoder vector
    (80/20 split), against the same fit on random Gaussian vectors with the same labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_mutual_info_score, balanced_accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from core.geometry import spectral
from core.geometry.lobes import spectral_labels
from core.geometry.umap_layout import cosine_knn

GEO_METHODS = ("knn", "knn_lowrank", "dense")


@dataclass
class Measured:
    """A statistic with its random baseline: z = (value − baseline_mean) / baseline_std."""

    value: float
    baseline_mean: float
    baseline_std: float
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def z(self) -> float | None:
        if not self.baseline_std > 0:
            return None
        return (self.value - self.baseline_mean) / self.baseline_std


def angular_similarity(unit: np.ndarray) -> np.ndarray:
    """(n, d) unit rows -> (n, n) 1 − arccos(cos)/π in [0, 1]."""
    cos = np.clip(unit @ unit.T, -1.0, 1.0)
    return 1.0 - np.arccos(cos) / np.pi


def knn_pairs(unit: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The symmetric kNN pattern of (n, d) unit rows: rows, cols, cosine of every pair (i, j)
    with j among i's k nearest by cosine or i among j's, no self pairs. O(n²·d) time in blocks,
    O(n·k) memory."""
    n = len(unit)
    idx, _ = cosine_knn(unit, min(k + 1, n))  # (n, k+1), self first
    rows = np.repeat(np.arange(n), idx.shape[1] - 1)
    cols = idx[:, 1:].ravel().astype(np.int64)
    P = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)).tocsr()
    P = ((P + P.T) > 0).tocoo()  # union of both directions
    r, c = P.row.astype(np.int64), P.col.astype(np.int64)
    u = np.asarray(unit, dtype=np.float64)
    cos = _rowdot(u, r, c)
    return r, c, np.clip(cos, -1.0, 1.0)


def _rowdot(u: np.ndarray, r: np.ndarray, c: np.ndarray, max_cells: int = 1 << 22) -> np.ndarray:
    """(pairs,) u[r]·u[c], gathering at most `max_cells` values of u at a time (the gathered
    rows of all pairs at once would be pairs × d floats: 18 GiB at 65k features, k = 30)."""
    chunk = max(1, max_cells // max(u.shape[1], 1))
    return np.concatenate(
        [np.einsum("ij,ij->i", u[r[i : i + chunk]], u[c[i : i + chunk]])
         for i in range(0, len(r), chunk)] or [np.zeros(0)]
    )  # fmt: skip


def angular_graph(unit: np.ndarray, k: int, lowrank: bool) -> spectral.GraphAffinity:
    """The angular affinity on the kNN pairs (lowrank=False) or, with lowrank=True,
    11ᵀ/2 + UUᵀ/π plus the exact remainder 1 − arccos(cos)/π − 1/2 − cos/π on the kNN pairs."""
    n = len(unit)
    r, c, cos = knn_pairs(unit, k)
    ang = 1.0 - np.arccos(cos) / np.pi
    if not lowrank:
        return spectral.GraphAffinity(sp.csr_matrix((ang, (r, c)), shape=(n, n)))
    rest = ang - 0.5 - cos / np.pi
    R = sp.csr_matrix((rest, (r, c)), shape=(n, n))
    # diagonal: the low-rank part gives 1/2 + 1/π on unit rows; the true value is 1
    R = R + sp.diags(np.full(n, 0.5 - 1.0 / np.pi))
    return spectral.GraphAffinity(R, np.asarray(unit, dtype=np.float64), 1.0 / np.pi, 0.5)


def geometric_clusters(
    unit: np.ndarray, ks: list[int], seed: int, method: str = "knn", k: int = 30
) -> dict[int, np.ndarray]:
    """{k: (n,) labels}: spectral clustering of decoder directions on angular similarity.

    "knn"/"knn_lowrank": O(n²·d) time for the neighbour blocks, O(n·k + n·d) memory;
    "dense": O(n²) memory (the paper's affinity, for small SAEs)."""
    if method == "dense":
        return spectral_labels(angular_similarity(unit.astype(np.float64)), ks, seed)
    if method not in GEO_METHODS:
        raise ValueError(f"unknown geo_method {method!r}; one of {GEO_METHODS}")
    if len(unit) < 2:
        return {}
    return spectral.labels(angular_graph(unit, k, method == "knn_lowrank"), ks, seed)


def _entropy(labels: np.ndarray) -> float:
    p = np.bincount(labels) / len(labels)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    """MI (nats) of two labellings of the same items, from their contingency table."""
    ka, kb = int(a.max()) + 1, int(b.max()) + 1
    c = np.bincount(a * kb + b, minlength=ka * kb).reshape(ka, kb) / len(a)  # joint (ka, kb)
    outer = np.outer(c.sum(1), c.sum(0))
    nz = c > 0
    return float((c[nz] * np.log(c[nz] / outer[nz])).sum())


def _ami_null(geo: np.ndarray, perms: list[np.ndarray]) -> np.ndarray:
    """sklearn's AMI for each permuted labelling, without recomputing the expected MI each time.

    AMI = (MI − E[MI]) / (mean(H) − E[MI]); a permutation keeps both marginals, so mean(H) and
    E[MI] are the same for every one: solve E[MI] from one sklearn call, then only MI varies.
    """
    if len(np.unique(geo)) < 2 or len(np.unique(perms[0])) < 2:
        return np.array([adjusted_mutual_info_score(p, geo) for p in perms])
    mean_h = (_entropy(geo) + _entropy(perms[0])) / 2
    first = adjusted_mutual_info_score(perms[0], geo)
    emi = (mutual_info(perms[0], geo) - first * mean_h) / (1 - first)
    return np.array([(mutual_info(p, geo) - emi) / (mean_h - emi) for p in perms])


def ami_zscore(geo: np.ndarray, lobes: np.ndarray, n_perm: int, seed: int) -> Measured:
    """AMI(geo, lobes) against the AMI of `n_perm` random permutations of the lobe labels.
    O(n_perm·n) time, O(n) memory."""
    rng = np.random.default_rng(seed)
    geo, lobes = (np.unique(x, return_inverse=True)[1] for x in (geo, lobes))  # labels 0..m-1
    ami = adjusted_mutual_info_score(lobes, geo)
    null = _ami_null(geo, [rng.permutation(lobes) for _ in range(n_perm)])
    return Measured(
        float(ami),
        float(null.mean()),
        float(null.std(ddof=1)) if n_perm > 1 else 0.0,
        {"n_permutations": n_perm, "n_features": len(lobes)},
    )


def _split(y: np.ndarray, test_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train / test indices, stratified when every class has at least two members."""
    idx = np.arange(len(y))
    strat = y if np.bincount(y).min(initial=len(y)) >= 2 and len(np.unique(y)) > 1 else None
    try:
        tr, te = train_test_split(idx, test_size=test_frac, random_state=seed, stratify=strat)
    except ValueError:  # a class too small for the requested test size
        tr, te = train_test_split(idx, test_size=test_frac, random_state=seed)
    return tr, te


def balanced_accuracy(
    X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, seed: int
) -> float:
    """Held-out balanced accuracy of a logistic regression X (n, d) -> y (n,)."""
    scaler = StandardScaler().fit(X[train])
    clf = LogisticRegression(max_iter=1000, random_state=seed)
    clf.fit(scaler.transform(X[train]), y[train])
    return float(balanced_accuracy_score(y[test], clf.predict(scaler.transform(X[test]))))


def logreg_vs_gaussian(
    X: np.ndarray, y: np.ndarray, test_frac: float, n_gaussian: int, seed: int
) -> Measured:
    """Balanced accuracy predicting lobes y from decoder rows X, vs random Gaussian rows.
    O((1 + n_gaussian)·iterations·n·d·k) time, O(n·d) memory."""
    y = np.unique(y, return_inverse=True)[1]  # labels 0..m-1 (some lobes may be absent)
    tr, te = _split(y, test_frac, seed)
    if len(np.unique(y[tr])) < 2:  # nothing to learn (a single lobe among these features)
        return Measured(float("nan"), float("nan"), 0.0, {"skipped": "fewer than two lobes"})
    acc = balanced_accuracy(X, y, tr, te, seed)
    rng = np.random.default_rng(seed)
    null = np.array(
        [
            balanced_accuracy(rng.standard_normal(X.shape), y, tr, te, seed)
            for _ in range(n_gaussian)
        ]
    )
    std = float(null.std(ddof=1)) if n_gaussian > 1 else 0.0
    return Measured(
        acc,
        float(null.mean()),
        std,
        {
            "chance": 1.0 / len(np.unique(y)),
            "n_train": len(tr),
            "n_test": len(te),
            "gaussian": null.tolist(),
        },
    )
