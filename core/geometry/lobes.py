"""Lobes: spectral clusters of co-occurrence (affinity phi + 1), what they hold, what they do.

Two methods, same clusters: `operator_lobes` (default) hands the exact affinity phi + 1 to
`spectral.labels` as a sparse-plus-low-rank operator built on the (windows, features) matrix B —
O(nnz(B)) per product, memory O(nnz(B) + d·k); `cooccurrence_lobes` is the paper's dense method
on a (d, d) phi, kept for small SAEs and as the reference.

`spectral_labels` (dense) is sklearn's SpectralClustering(affinity="precomputed", assign_labels="kmeans",
random_state=seed) for several k at once: the spectral embedding is computed once with the largest
k; its first k columns are the embedding SpectralClustering computes for k (same normalised-
Laplacian eigenvectors, same deterministic signs), and k-means gets the random state in the state
SpectralClustering leaves it in. A test checks the labels are identical.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.cluster import k_means
from sklearn.manifold import spectral_embedding

from core.geometry import spectral

N_TOP_TOKENS = 10
N_TOP_FEATURES = 10


def spectral_labels(affinity: np.ndarray, ks: Iterable[int], seed: int) -> dict[int, np.ndarray]:
    """{k: (n,) labels in 0..k-1} for each k < n; affinity is (n, n), symmetric, >= 0."""
    n = affinity.shape[0]
    ks = [k for k in sorted(set(ks)) if k < n]
    if not ks:
        return {}
    maps = spectral_embedding(
        affinity, n_components=max(ks), random_state=seed, eigen_tol="auto", drop_first=False
    )  # (n, k_max)
    out = {}
    for k in ks:
        rs = np.random.RandomState(seed)
        rs.uniform(-1, 1, n)  # the ARPACK start vector SpectralClustering draws first
        _, labels, _ = k_means(maps[:, :k], k, random_state=rs, n_init=10)
        out[k] = labels.astype(np.int32)
    return out


def expand(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(mask.sum(),) labels -> (len(mask),) with -1 where mask is False."""
    full = np.full(len(mask), -1, dtype=np.int32)
    full[mask] = labels
    return full


def cooccurrence_lobes(
    phi: np.ndarray, alive: np.ndarray, ks: Iterable[int], seed: int
) -> dict[int, np.ndarray]:
    """{k: (d,) lobe per feature}; features that never occur in a window get -1."""
    sub = phi[np.ix_(alive, alive)] + 1.0  # (n_alive, n_alive) affinity in [0, 2]
    return {k: expand(lab, alive) for k, lab in spectral_labels(sub, ks, seed).items()}


def operator_lobes(B: sp.spmatrix, ks: Iterable[int], seed: int) -> dict[int, np.ndarray]:
    """{k: (d,) lobe per feature} from B (windows, d) without forming phi; -1 for features
    that never occur. Equals `cooccurrence_lobes` on the same data (up to ARPACK's tolerance)."""
    alive = np.asarray(B.sum(axis=0)).ravel() > 0
    aff = spectral.PhiAffinity(sp.csc_matrix(B)[:, alive])
    return {k: expand(lab, alive) for k, lab in spectral.labels(aff, ks, seed).items()}


def hub_scores(phi: spectral.PhiAffinity, labels: np.ndarray, k: int) -> np.ndarray:
    """(d,) mean phi of each feature to the members of its own lobe (itself included, as the
    dense phi[members][:, members].mean(1)); NaN outside lobes. One (d, k) operator product."""
    member = labels >= 0
    onehot = np.zeros((len(labels), k))
    onehot[np.flatnonzero(member), labels[member]] = 1.0  # (d, k)
    within = phi.phi_matmat(onehot)  # (d, k): Σ_{j in lobe c} phi_ij
    size = np.maximum(onehot.sum(axis=0), 1.0)
    out = np.full(len(labels), np.nan)
    out[member] = within[member, labels[member]] / size[labels[member]]
    return out


def lobe_fractions(B: sp.csr_matrix, labels: np.ndarray, k: int) -> np.ndarray:
    """(n_windows, k): fraction of each lobe's features active in each window. O(nnz B)."""
    member = labels >= 0
    onehot = sp.csr_matrix(
        (np.ones(member.sum()), (np.flatnonzero(member), labels[member])), shape=(len(labels), k)
    )  # (d, k)
    size = np.maximum(np.bincount(labels[member], minlength=k), 1)
    return np.asarray((B @ onehot).todense()) / size  # (n_windows, k)


def winning_lobe(frac: np.ndarray) -> np.ndarray:
    """(n_windows,) argmax lobe per window; -1 where no lobe feature is active."""
    win = frac.argmax(axis=1).astype(np.int32)
    win[frac.max(axis=1) <= 0] = -1
    return win


def lobe_function(
    winner: np.ndarray, wins: pd.DataFrame, facets: Sequence[str] = ("source", "topic", "language")
) -> pd.DataFrame:
    """Winning-lobe counts per document facet value: columns facet, value, lobe, n_windows."""
    keep = winner >= 0
    frames = []
    for facet in facets:
        df = pd.DataFrame({"value": wins[facet].to_numpy()[keep], "lobe": winner[keep]})
        g = df.groupby(["value", "lobe"]).size().rename("n_windows").reset_index()
        g.insert(0, "facet", facet)
        frames.append(g)
    return pd.concat(frames, ignore_index=True)


def _token_scores(members: np.ndarray, tokens: list[list[str]], df_all: Counter[str]) -> list[str]:
    """Top tokens of a lobe by tf-idf over the members' top_tokens lists."""
    tf: Counter[str] = Counter(t for f in members for t in tokens[f])
    n_feat = max(sum(1 for t in tokens if t), 1)
    score = {t: c * math.log(1 + n_feat / df_all[t]) for t, c in tf.items()}
    return sorted(score, key=lambda t: (-score[t], t))[:N_TOP_TOKENS]


def lobe_table(
    labels: np.ndarray, k: int, hubs_by: np.ndarray, tokens: list[list[str]], winner: np.ndarray
) -> pd.DataFrame:
    """One row per lobe (and -1 for never-occurring features): lobe, size, top_tokens,
    top_features (hubs: highest `hubs_by`, the mean phi to the lobe, see `hub_scores`),
    n_windows_won."""
    df_all: Counter[str] = Counter(t for toks in tokens for t in set(toks))
    won = np.bincount(winner[winner >= 0], minlength=k)
    rows = []
    for lobe in range(-1, k):
        members = np.flatnonzero(labels == lobe)
        if lobe == -1 and not len(members):
            continue
        hubs: list[int] = []
        if lobe >= 0 and len(members):
            order = np.argsort(-hubs_by[members], kind="stable")
            hubs = members[order[:N_TOP_FEATURES]].tolist()
        rows.append(
            {
                "lobe": lobe,
                "size": len(members),
                "top_tokens": _token_scores(members, tokens, df_all) if lobe >= 0 else [],
                "top_features": hubs,
                "n_windows_won": int(won[lobe]) if lobe >= 0 else 0,
            }
        )
    return pd.DataFrame(rows)
