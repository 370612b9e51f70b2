"""Feature co-occurrence in windows of tokens (METHODS §5): counts, phi, Jaccard, top pairs.

A feature "occurs" in a window if it fires anywhere in it. With B the binary (windows, features)
matrix, n_i = column sums and n_ij = BᵀB (one sparse matmul); everything else follows from
n = number of windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp


@dataclass
class Cooccurrence:
    B: sp.csr_matrix
    """(n_windows, d_sae) binary: feature fires somewhere in the window."""
    n_i: np.ndarray
    """(d_sae,) windows in which each feature occurs."""
    n_ij: np.ndarray
    """(d_sae, d_sae) windows in which both occur (diagonal = n_i)."""

    @property
    def n(self) -> int:
        return int(self.B.shape[0])

    @property
    def alive(self) -> np.ndarray:
        """(d_sae,) bool: occurs in at least one window."""
        return self.n_i > 0


def binary_matrix(
    win: np.ndarray, feature: np.ndarray, n_windows: int, d_sae: int
) -> sp.csr_matrix:
    """(n_windows, d_sae) 0/1 matrix from (window, feature) firing pairs (duplicates collapse)."""
    data = np.ones(len(win), dtype=np.float32)
    B = sp.csr_matrix((data, (win, feature)), shape=(n_windows, d_sae))
    B.data[:] = 1.0  # duplicates were summed
    return B


def count(B: sp.csr_matrix, chunk: int = 4096) -> Cooccurrence:
    """n_i and n_ij = BᵀB. Sparse matmul when B is sparse; when many features share each window
    (TopK features are bursty: a typical 64-token window holds a large share of all features)
    a BLAS product over dense blocks of windows is far faster and equally exact (float32
    sums of 0/1 up to 2^24 windows per block)."""
    n, d = B.shape
    n_i = np.asarray(B.sum(axis=0)).ravel().astype(np.int64)  # (d,)
    if B.nnz < 0.01 * n * d:
        return Cooccurrence(B, n_i, (B.T @ B).toarray().astype(np.int64))
    n_ij = np.zeros((d, d), dtype=np.int64)
    for lo in range(0, n, chunk):
        block = B[lo : lo + chunk].toarray()  # (chunk, d) float32 0/1
        n_ij += (block.T @ block).astype(np.int64)  # (d, d)
    return Cooccurrence(B, n_i, n_ij)


def phi_coefficient(co: Cooccurrence) -> np.ndarray:
    """(d, d) phi = (n11·n00 − n10·n01) / sqrt(n1·n0·n·1·n·0); 0 where undefined.

    The numerator simplifies to n11·n − n_i·n_j.
    """
    n = float(co.n)
    ni = co.n_i.astype(np.float64)
    num = co.n_ij * n - np.outer(ni, ni)
    marg = ni * (n - ni)  # (d,) n1·n0 of each feature
    den = np.sqrt(np.outer(marg, marg))
    with np.errstate(divide="ignore", invalid="ignore"):
        phi = np.where(den > 0, num / den, 0.0)
    return phi


def jaccard(co: Cooccurrence) -> np.ndarray:
    """(d, d) n11 / (n_i + n_j − n11); 0 where neither occurs."""
    union = co.n_i[:, None] + co.n_i[None, :] - co.n_ij
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, co.n_ij / union, 0.0)


def top_pairs(co: Cooccurrence, phi: np.ndarray, jac: np.ndarray, n_top: int) -> pd.DataFrame:
    """Per feature, its n_top partners by phi among features it shares a window with.

    Columns feature, rank (1-based), other, phi, jaccard, n11. Ties go to the lower index.
    """
    d = phi.shape[0]
    score = np.where(co.n_ij > 0, phi, -np.inf)
    np.fill_diagonal(score, -np.inf)
    m = min(n_top, d - 1)
    if m <= 0:
        return pd.DataFrame(columns=["feature", "rank", "other", "phi", "jaccard", "n11"])
    other = np.argsort(-score, axis=1, kind="stable")[:, :m]  # (d, m) by phi desc, ties by index
    rows = np.repeat(np.arange(d), m)
    cols = other.ravel()
    df = pd.DataFrame(
        {
            "feature": rows.astype(np.int32),
            "rank": np.tile(np.arange(1, m + 1), d).astype(np.int32),
            "other": cols.astype(np.int32),
            "phi": phi[rows, cols].astype(np.float32),
            "jaccard": jac[rows, cols].astype(np.float32),
            "n11": co.n_ij[rows, cols],
        }
    )
    return df[np.isfinite(score[rows, cols])].reset_index(drop=True)
