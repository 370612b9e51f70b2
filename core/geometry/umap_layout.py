"""2-D UMAP layouts of unit-normalised decoder directions (cosine metric), seeded.

The cosine kNN graph is computed exactly (one matmul per chunk) and handed to UMAP, which
skips its approximate NN-descent: on a few thousand 576-d points that is both faster (NN-descent
on high-dimensional, weakly clustered data is the slow part) and fully reproducible.

Cost: the kNN is O(n²·d) time in row blocks of at most 2^24 similarity cells (64 MiB of float32
at any width; 256 rows at n = 65,536), O(n·k) memory; UMAP's graph and layout are O(n·k).
UMAP with a random_state runs its epochs on one thread (umap-learn forces n_jobs=1 to be
reproducible); `GeometryConfig.umap_seeded=False` drops the seed so the epochs use every core,
for SAEs of several hundred thousand features where the layout dominates the stage.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from core.geometry.config import GeometryConfig


@torch.no_grad()
def cosine_knn(
    unit: np.ndarray, k: int, chunk: int = 2048, max_cells: int = 1 << 24
) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) unit rows -> indices (n, k) int32 and cosine distances (n, k) float32, self first."""
    U = torch.from_numpy(np.ascontiguousarray(unit, dtype=np.float32))
    chunk = max(1, min(chunk, max_cells // max(len(U), 1)))  # (chunk, n) block stays bounded
    idx, dist = [], []
    for lo in range(0, len(U), chunk):
        sim = U[lo : lo + chunk] @ U.T  # (chunk, n)
        rows = torch.arange(sim.shape[0])
        sim[rows, lo + rows] = 2.0  # self is always neighbour 0, at distance 0
        v, i = sim.topk(k, dim=1)
        idx.append(i.int().numpy())
        dist.append((1.0 - v).clamp_min(0.0).numpy())
    return np.concatenate(idx), np.concatenate(dist)


def _quiet_numba() -> None:
    """Run numba's parallel code on its own 'workqueue' pool. Its default OpenMP layer shares
    libgomp with torch and sklearn and resets their thread counts: after one UMAP, the
    spectral clustering that follows ran 3–10x slower on a 2-core machine (spinning threads).
    Has no effect once numba has started its pool."""
    import numba

    numba.config.THREADING_LAYER = "workqueue"  # type: ignore[attr-defined]


def layout(unit: np.ndarray, cfg: GeometryConfig) -> np.ndarray:
    """(n, d) unit decoder rows -> (n, 2) float32 UMAP coordinates."""
    n = len(unit)
    if n < 4:  # UMAP needs a few points; degenerate SAEs sit at the origin
        return np.zeros((n, 2), dtype=np.float32)
    _quiet_numba()
    import umap  # slow import (numba); only the geometry stage pays it

    k = min(cfg.umap_neighbors, n - 1)
    idx, dist = cosine_knn(unit, k)
    reducer = umap.UMAP(
        n_neighbors=k,
        min_dist=cfg.umap_min_dist,
        metric="cosine",
        n_epochs=cfg.umap_epochs,
        random_state=cfg.seed if cfg.umap_seeded else None,
        precomputed_knn=(idx, dist, None),
        init="spectral",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_jobs forced to 1 by a seed; no search index kept
        xy = reducer.fit_transform(np.asarray(unit, dtype=np.float32))  # (n, 2)
    return np.asarray(xy, dtype=np.float32)
