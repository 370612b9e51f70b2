"""Feature co-occurrence in windows of tokens (METHODS §5): counts, phi, Jaccard, top partners.

A feature "occurs" in a window if it fires anywhere in it. With B the binary (windows, features)
matrix, n_i = column sums and n_ij = BᵀB; everything else follows from n = number of windows.

Two ways to the top partners of every feature:
- `top_partners` (the default, any width): rows of BᵀB a block of features at a time; each block
  holds whole rows, so its per-row top-m is final and exact. Memory O(nnz B + block · d), never
  (d, d): TopK features are bursty, so BᵀB is nearly dense and one sparse product would be too.
- `count` + `phi_coefficient` + `jaccard` + `top_pairs`: the dense (d, d) matrices of the paper's
  method, for small SAEs and as the reference the blocked path is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

PAIR_COLUMNS = ["feature", "rank", "other", "phi", "jaccard", "n11"]


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


def occurrences(B: sp.spmatrix) -> np.ndarray:
    """(d,) int64 n_i: windows in which each feature occurs. O(nnz B)."""
    return np.asarray(B.sum(axis=0)).ravel().astype(np.int64)


def count(B: sp.csr_matrix, chunk: int = 4096) -> Cooccurrence:
    """Dense n_i and n_ij = BᵀB: O(d²) memory, for the dense lobe method on small SAEs.

    Sparse matmul when B is sparse; when many features share each window a BLAS product over
    dense blocks of windows is far faster and equally exact (float32 sums of 0/1 up to 2^24
    windows per block)."""
    n, d = B.shape
    n_i = occurrences(B)
    if B.nnz < 0.01 * n * d:
        return Cooccurrence(B, n_i, (B.T @ B).toarray().astype(np.int64))
    n_ij = np.zeros((d, d), dtype=np.int64)
    for lo in range(0, n, chunk):
        block = B[lo : lo + chunk].toarray()  # (chunk, d) float32 0/1
        n_ij += (block.T @ block).astype(np.int64)  # (d, d)
    return Cooccurrence(B, n_i, n_ij)


def _scale(n_i: np.ndarray, n: int) -> np.ndarray:
    """(d,) S = 1/sqrt(n_i·(n − n_i)), 0 where that is 0 (dead or always-on: phi is 0 there)."""
    marg = n_i.astype(np.float64) * (n - n_i)
    return np.where(marg > 0, 1.0 / np.sqrt(np.where(marg > 0, marg, 1.0)), 0.0)


def _phi(n11: np.ndarray, n: int, ni_rows: np.ndarray, ni_cols: np.ndarray) -> np.ndarray:
    """(r, c) phi of rows × cols from their n11 counts; 0 where undefined (dead / always on).

    (n11·n00 − n10·n01) / sqrt(n1·n0·n·1·n·0) = (n11·n − n_i·n_j)·S_i·S_j, computed as
    (n·S_i·S_j)·n11 − (S_i·n_i)(S_j·n_j): two outer products and no division or mask over the
    (r, c) cells. The dense, slab and cell paths do these same float64 operations, so their
    values agree to the bit and so do their rankings."""
    si, sj = _scale(ni_rows, n), _scale(ni_cols, n)
    out = np.multiply.outer(si * float(n), sj)
    out *= n11
    out -= np.multiply.outer(si * ni_rows, sj * ni_cols)
    return out


def _phi_cells(n11: np.ndarray, n: int, ni: np.ndarray, nj: np.ndarray) -> np.ndarray:
    """(c,) phi of single cells (pairs i, j given as aligned arrays), as `_phi` computes it."""
    si, sj = _scale(ni, n), _scale(nj, n)
    return (si * float(n)) * sj * n11 - (si * ni) * (sj * nj)


def phi_coefficient(co: Cooccurrence) -> np.ndarray:
    """(d, d) phi of every pair; 0 where undefined."""
    return _phi(co.n_ij, co.n, co.n_i, co.n_i)


def jaccard(co: Cooccurrence) -> np.ndarray:
    """(d, d) n11 / (n_i + n_j − n11); 0 where neither occurs."""
    union = co.n_i[:, None] + co.n_i[None, :] - co.n_ij
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, co.n_ij / union, 0.0)


def _rank_cells(
    r: np.ndarray, c: np.ndarray, s: np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray]:
    """Of candidate cells (row, column, finite score), each row's m best: score desc, ties to
    the lower column. Returns positions of the kept cells and their 1-based rank. O(n log n)."""
    order = np.lexsort((c, -s, r))  # by row, then score desc, then column
    rs = r[order]
    rank = np.arange(len(rs)) - np.searchsorted(rs, rs)  # position after the row's first cell
    keep = rank < m
    return order[keep], rank[keep] + 1


def _rank_rows(score: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_rank_cells` over a dense (r, d) score, -inf never kept: row, column, rank. O(r·d)."""
    # (r, 1) m-th largest per row; torch's top-k is ~8x faster than np.partition here
    kth = torch.from_numpy(score).topk(m, dim=1).values[:, -1:].numpy()
    r, c = np.nonzero((score >= kth) & np.isfinite(score))  # candidates, ties included
    pos, rank = _rank_cells(r, c, score[r, c], m)
    return r[pos], c[pos], rank


def _frame(feature: np.ndarray, rank: np.ndarray, other: np.ndarray, phi: np.ndarray,
           jac: np.ndarray, n11: np.ndarray) -> pd.DataFrame:  # fmt: skip
    return pd.DataFrame(
        {
            "feature": feature.astype(np.int32),
            "rank": rank.astype(np.int32),
            "other": other.astype(np.int32),
            "phi": phi.astype(np.float32),
            "jaccard": jac.astype(np.float32),
            "n11": n11.astype(np.int64),
        }
    )


def top_pairs(co: Cooccurrence, phi: np.ndarray, jac: np.ndarray, n_top: int) -> pd.DataFrame:
    """Dense path: per feature, its n_top partners by phi among features it shares a window with.

    Columns feature, rank (1-based), other, phi, jaccard, n11. Ties go to the lower index.
    """
    d = phi.shape[0]
    m = min(n_top, d - 1)
    if m <= 0:
        return pd.DataFrame(columns=PAIR_COLUMNS)
    score = np.where(co.n_ij > 0, phi, -np.inf)
    np.fill_diagonal(score, -np.inf)
    r, c, rank = _rank_rows(score, m)
    return _frame(r, rank, c, phi[r, c], jac[r, c], co.n_ij[r, c])


def block_size(d: int, block_cells: int) -> int:
    """Features per block so that a (block, d) float64 slab has about `block_cells` cells."""
    return int(max(1, min(d, block_cells // max(d, 1))))


Cells = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""Kept cells of a block: row (global), column, rank, phi, n11."""


def _slab_block(Bt: sp.csr_matrix, Bc: sp.csc_matrix, n_i: np.ndarray, lo: int, hi: int,
                m: int) -> Cells:  # fmt: skip
    """Rows lo..hi of BᵀB as a dense slab: (d, n) sparse @ (n, |F|) dense. O(nnz(B)·|F|)."""
    n = Bc.shape[0]
    n11 = np.asarray(Bt @ Bc[:, lo:hi].toarray()).T  # (|F|, d) float32, exact integer counts
    score = _phi(n11, n, n_i[lo:hi], n_i)  # (|F|, d), ranked in place
    score[n11 <= 0] = -np.inf
    score[np.arange(hi - lo), np.arange(lo, hi)] = -np.inf  # not one's own partner
    r, c, rank = _rank_rows(score, m)
    return lo + r, c, rank, score[r, c], n11[r, c].astype(np.int64)


def _sparse_block(Bt: sp.csr_matrix, B: sp.csr_matrix, n_i: np.ndarray, lo: int, hi: int,
                  m: int) -> Cells:  # fmt: skip
    """Rows lo..hi of BᵀB as a sparse product, only its non-zero cells. O(nnz of the block)."""
    C = (Bt[lo:hi] @ B).tocoo()  # (|F|, d) counts
    r, c, v = lo + C.row.astype(np.int64), C.col.astype(np.int64), C.data
    off = r != c
    r, c, v = r[off], c[off], v[off]
    phi = _phi_cells(v, B.shape[0], n_i[r], n_i[c])
    pos, rank = _rank_cells(r, c, phi, m)
    return r[pos], c[pos], rank, phi[pos], v[pos].astype(np.int64)


def top_partners(B: sp.csr_matrix, n_top: int, block_cells: int = 1 << 22) -> pd.DataFrame:
    """Per feature, its n_top partners by phi among the features it shares a window with, with
    their Jaccard and n11 — the same rows as the dense `top_pairs`, without any (d, d) array.

    Each block of features F takes its whole rows n11[F, :] of BᵀB, so its per-row top-m is
    final and exact. Bursty features (TopK: BᵀB nearly dense) get a sparse-times-dense product
    and dense (|F|, d) slabs; sparse ones a sparse block product and its non-zero cells only.
    Time O(nnz(B)·d + d²) when bursty, O(nnz(BᵀB) log) when not; memory O(nnz(B) + block_cells)."""
    n, d = B.shape
    m = min(n_top, d - 1)
    if m <= 0 or B.nnz == 0:
        return pd.DataFrame(columns=PAIR_COLUMNS)
    B = sp.csr_matrix(B)
    Bc, Bt = B.tocsc(), B.T.tocsr()  # column slices of B (n, d); Bᵀ (d, n)
    n_i = occurrences(B)
    # per feature, an upper bound of its co-occurring partners: the sizes of its windows summed
    reach = Bt @ np.diff(B.indptr).astype(np.float64)  # (d,)
    frames = []
    b = block_size(d, block_cells)
    for lo in range(0, d, b):
        hi = min(d, lo + b)
        if reach[lo:hi].sum() > 0.1 * (hi - lo) * d:  # most cells of the block are non-zero
            r, c, rank, phi, cnt = _slab_block(Bt, Bc, n_i, lo, hi, m)
        else:
            r, c, rank, phi, cnt = _sparse_block(Bt, B, n_i, lo, hi, m)
        frames.append(_frame(r, rank, c, phi, cnt / (n_i[r] + n_i[c] - cnt), cnt))
    return pd.concat(frames, ignore_index=True)
