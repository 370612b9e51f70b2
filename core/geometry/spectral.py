"""Spectral clustering on affinities given as operators, never as (n, n) arrays.

`labels` reproduces sklearn's SpectralClustering(affinity="precomputed", assign_labels="kmeans",
random_state=seed) — normalised Laplacian, diagonal of the affinity ignored, isolated nodes at
degree 1, eigenvectors divided by sqrt(degree), deterministic sign flip, no drop_first, k-means
with n_init=10 drawn from the random state after the ARPACK start vector — but asks only for
products A·X. The k smallest eigenvectors of L = I − D^-1/2 A' D^-1/2 are the k largest of
M = D^-1/2 A' D^-1/2 (A' = A without its diagonal), which ARPACK finds from matvecs alone
(sklearn's shift-invert mode needs a factorisation of L instead).

Affinities:
- `PhiAffinity`: phi + 1 of co-occurrence, exactly, from the sparse (windows, features) B:
  phi + 1 = n·S·BᵀB·S − (S·n_i)(S·n_i)ᵀ + 11ᵀ, S = diag(1/√(n_i(n − n_i))), S_i = 0 where
  n_i(n − n_i) = 0 (phi is 0 there, as in the dense code). A product costs O(nnz(B)·c + d·c).
- `GraphAffinity`: a sparse symmetric graph (kNN of decoder directions), optionally plus the
  low-rank part c0·11ᵀ + s·UUᵀ. A product costs O(nnz(graph)·c + d·rank·c).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import numpy as np
import scipy.sparse as sp
from scipy.linalg import eigh
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh
from sklearn.cluster import k_means
from sklearn.utils.extmath import _deterministic_vector_sign_flip


class Affinity(Protocol):
    """A symmetric, non-negative (n, n) affinity known through its products."""

    n: int

    def matmat(self, X: np.ndarray) -> np.ndarray:
        """A @ X for X (n, c) -> (n, c), diagonal included."""
        ...

    def diagonal(self) -> np.ndarray:
        """(n,) diag(A)."""
        ...


class PhiAffinity:
    """phi + 1 between the columns of B (windows, d): the co-occurrence affinity of the lobes."""

    def __init__(self, B: sp.spmatrix) -> None:
        self.B = sp.csr_matrix(B, dtype=np.float64)  # (n_windows, d), converted once
        self.Bt = self.B.T.tocsr()  # (d, n_windows)
        self.n_windows = int(B.shape[0])
        self.n = int(B.shape[1])
        n_i = np.asarray(self.B.sum(axis=0)).ravel()  # (d,)
        marg = n_i * (self.n_windows - n_i)
        self.s = np.where(marg > 0, 1.0 / np.sqrt(np.where(marg > 0, marg, 1.0)), 0.0)  # (d,)
        self.sn = self.s * n_i  # (d,) S·n_i

    def phi_matmat(self, X: np.ndarray) -> np.ndarray:
        """phi @ X for X (d, c): n·S·Bᵀ(B(S·X)) − (S·n)((S·n)ᵀX). O(nnz(B)·c)."""
        sx = self.s[:, None] * X
        bsx = self.Bt @ (self.B @ sx)  # (d, c)
        return self.n_windows * self.s[:, None] * bsx - np.outer(self.sn, self.sn @ X)

    def matmat(self, X: np.ndarray) -> np.ndarray:
        return self.phi_matmat(X) + X.sum(axis=0, keepdims=True)

    def diagonal(self) -> np.ndarray:
        """phi_ii + 1: 2, or 1 where phi is undefined (S_i = 0)."""
        colsq = np.asarray(self.B.multiply(self.B).sum(axis=0)).ravel()  # (d,) = n_i
        return self.n_windows * self.s**2 * colsq - self.sn**2 + 1.0


class GraphAffinity:
    """R + c0·11ᵀ + scale·UUᵀ: R a sparse symmetric (n, n) graph, U (n, r) optional."""

    def __init__(
        self, R: sp.spmatrix, U: np.ndarray | None = None, scale: float = 0.0, c0: float = 0.0
    ) -> None:
        self.R = sp.csr_matrix(R, dtype=np.float64)
        self.n = int(R.shape[0])
        self.U = None if U is None else np.asarray(U, dtype=np.float64)
        self.scale, self.c0 = scale, c0

    def matmat(self, X: np.ndarray) -> np.ndarray:
        out = self.R @ X + self.c0 * X.sum(axis=0, keepdims=True)
        if self.U is not None:
            out += self.scale * (self.U @ (self.U.T @ X))
        return np.asarray(out)

    def diagonal(self) -> np.ndarray:
        low = 0.0 if self.U is None else self.scale * (self.U**2).sum(axis=1)
        return self.R.diagonal() + self.c0 + low


class DenseAffinity:
    """An (n, n) array as an Affinity (tests, small problems)."""

    def __init__(self, A: np.ndarray) -> None:
        self.A = np.asarray(A, dtype=np.float64)
        self.n = int(A.shape[0])

    def matmat(self, X: np.ndarray) -> np.ndarray:
        return self.A @ X

    def diagonal(self) -> np.ndarray:
        return np.diag(self.A).copy()


def normalised(aff: Affinity) -> tuple[LinearOperator, np.ndarray]:
    """M = D^-1/2 A' D^-1/2 as a LinearOperator, and dd = sqrt(degree) (1 where isolated),
    with A' = A − diag(A) and degree = A'·1, as scipy's csgraph.laplacian(normed=True)."""
    diag = aff.diagonal()
    deg = aff.matmat(np.ones((aff.n, 1)))[:, 0] - diag
    dd = np.where(deg > 0, np.sqrt(np.abs(deg)), 1.0)  # (n,)

    def mm(X: np.ndarray) -> np.ndarray:
        X = X.reshape(aff.n, -1)
        Y = X / dd[:, None]
        return (aff.matmat(Y) - diag[:, None] * Y) / dd[:, None]

    op = LinearOperator((aff.n, aff.n), matvec=mm, matmat=mm, dtype=np.float64)
    return op, dd


def embedding(aff: Affinity, n_components: int, seed: int, tol: float = 0.0) -> np.ndarray:
    """(n, n_components) spectral embedding as sklearn's spectral_embedding(drop_first=False)."""
    op, dd = normalised(aff)
    n = aff.n
    v0 = np.random.RandomState(seed).uniform(-1, 1, n)  # sklearn's ARPACK start vector
    if n <= 5 * n_components + 1:  # tiny: a dense eigendecomposition is cheaper and safer
        vals, vecs = eigh(op.matmat(np.eye(n)))
    else:
        try:
            vals, vecs = eigsh(op, k=n_components, which="LA", v0=v0, tol=tol)
        except ArpackNoConvergence:  # clustered eigenvalues: a wider Krylov space, looser tol
            ncv = min(n, max(4 * n_components + 1, 60))
            vals, vecs = eigsh(op, k=n_components, which="LA", v0=v0, tol=1e-9, ncv=ncv)
    vecs = vecs[:, np.argsort(-vals, kind="stable")[:n_components]]  # (n, c) largest of M first
    emb = _deterministic_vector_sign_flip((vecs / dd[:, None]).T)  # (c, n)
    return np.ascontiguousarray(emb.T)


def labels(aff: Affinity, ks: Iterable[int], seed: int, tol: float = 0.0) -> dict[int, np.ndarray]:
    """{k: (n,) labels in 0..k-1} for each k < n, one embedding with the largest k (its first k
    columns are the embedding for k). O(iterations · cost of aff.matmat + n·k²)."""
    n = aff.n
    ks = [k for k in sorted(set(ks)) if k < n]
    if not ks:
        return {}
    maps = embedding(aff, max(ks), seed, tol)  # (n, k_max)
    return {k: kmeans_labels(maps[:, :k], k, seed) for k in ks}


def kmeans_labels(maps: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means as SpectralClustering runs it: the random state after its ARPACK start vector."""
    rs = np.random.RandomState(seed)
    rs.uniform(-1, 1, len(maps))  # the ARPACK start vector SpectralClustering draws first
    _, lab, _ = k_means(maps, k, random_state=rs, n_init=10)
    return lab.astype(np.int32)
