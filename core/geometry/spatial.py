"""Are lobes spatial? Two measurements against random baselines (METHODS §5).

(a) AMI between geometric clusters (spectral clustering of decoder directions on angular
    similarity 1 − arccos(cos)/π) and co-occurrence lobes, as a z-score over label permutations.
(b) Balanced test accuracy of a logistic regression predicting the lobe from the decoder vector
    (80/20 split), against the same fit on random Gaussian vectors with the same labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_mutual_info_score, balanced_accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from core.geometry.lobes import spectral_labels


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


def geometric_clusters(unit: np.ndarray, ks: list[int], seed: int) -> dict[int, np.ndarray]:
    """{k: (n,) labels}: spectral clustering of decoder directions on angular similarity."""
    return spectral_labels(angular_similarity(unit.astype(np.float64)), ks, seed)


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
    """AMI(geo, lobes) against the AMI of `n_perm` random permutations of the lobe labels."""
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
    """Balanced accuracy predicting lobes y from decoder rows X, vs random Gaussian rows."""
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
