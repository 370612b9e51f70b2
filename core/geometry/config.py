"""Configuration of the geometry stage (METHODS §5): UMAP, co-occurrence, lobes, statistics."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GeometryConfig:
    window: int = 64
    """Tokens per co-occurrence window (non-overlapping, within one document). The paper uses
    256 on a corpus of millions of tokens; on ~220k tokens in documents of <= ~1000 tokens, 256
    leaves under 1k windows, too few for stable phi between 2k features. 64 gives ~3.5k windows
    while a window still spans a few sentences (one topic, one language)."""
    min_window_tokens: int = 32
    """A document's trailing window shorter than this is dropped (it would look artificially
    quiet); documents shorter than this make one window of their own length."""
    threshold: float = 0.0
    """A feature occurs in a window if its activation exceeds this somewhere in it. The paper's
    act > 1 suits Gemma Scope's JumpReLU units; TopK activations are in raw residual units whose
    scale differs per layer, and TopK already keeps only the k strongest latents, so any stored
    positive activation counts."""
    threshold_relative: bool = False
    """Read `threshold` as a fraction of each feature's max_act (e.g. 0.1) instead of absolute."""
    n_cooccur: int = 10
    """Top co-occurring partners m stored per feature (by phi, among features sharing a
    window), with their Jaccard and n11; exact for the pairs kept, computed a block of features
    at a time, so memory stays linear in d_sae."""
    cooccur_block_cells: int = 1 << 22
    """Cells of one (features × d_sae) block of the co-occurrence counts (float64 slabs of this
    size are the stage's largest temporaries: 4M cells = 32 MiB each)."""
    lobe_method: str = "exact_operator"
    """How lobes cluster phi + 1: "exact_operator" (the affinity as a sparse-plus-low-rank
    operator, memory linear in d_sae, same clusters as dense) or "dense" (the paper's
    (d, d) phi matrix through sklearn; small SAEs only: 65,536 features need 32 GiB)."""
    geo_method: str = "knn_lowrank"
    """How decoder directions are clustered on angular similarity 1 − arccos(cos)/π:
    "knn_lowrank" (the first-order part 1/2 + cos/π as a low-rank operator through the unit
    decoder rows, plus the exact remainder on a sparse kNN graph: agrees with "dense" as well as
    dense agrees with itself across seeds), "knn" (the kNN graph alone: a local clustering that
    agrees less with the dense one), or "dense" (the paper's (d, d) affinity; small SAEs only)."""
    geo_neighbors: int = 30
    """Neighbours per decoder direction in the geo_cluster kNN graph (before symmetrising)."""
    lobe_ks: tuple[int, ...] = (2, 4, 8, 16)
    """Numbers of lobes clustered and stored (the paper shows 2, 3, 4, 8)."""
    default_k: int = 8
    """The lobe count shown by default (`feature_geometry.lobe`)."""
    stats_ks: tuple[int, ...] = (2, 4, 8, 16)
    """Lobe counts for which the spatial-modularity statistics (AMI, logistic regression) run."""
    n_permutations: int = 100
    """Label permutations for the AMI z-score."""
    test_frac: float = 0.2
    """Held-out fraction for the lobe-from-decoder logistic regression."""
    n_gaussian: int = 3
    """Random-Gaussian repeats for the logistic-regression and clustering-entropy baselines."""
    umap_neighbors: int = 15
    umap_min_dist: float = 0.1
    umap_epochs: int = 200
    """UMAP optimisation epochs (umap-learn uses 200 above 10k points, 500 below)."""
    umap_seeded: bool = True
    """Pass `seed` to UMAP: reproducible layouts, but umap-learn then runs single-threaded.
    Set False for SAEs of several hundred thousand features to use every core."""
    joint_kinds: tuple[str, ...] = ("resid_post",)
    """Site kinds laid out together in one joint UMAP (they share the residual space)."""
    spectrum_ranks: tuple[int, int] = (10, 150)
    """Eigenvalue ranks (1-based, inclusive) of the power-law fit log λ ~ log rank."""
    entropy_dims: int = 100
    """PCA dimensions before the kNN entropy estimate."""
    entropy_k: int = 3
    """Neighbour order of the Kozachenko–Leonenko entropy estimator."""
    threads: int | None = 1
    """BLAS / OpenMP threads inside the stage (None = the libraries' default). These are small
    dense problems that gain little from threads and lose badly to spin-waiting when the CPU
    is shared."""
    seed: int = 0

    def __post_init__(self) -> None:
        self.lobe_ks = tuple(sorted({int(k) for k in self.lobe_ks}))
        self.stats_ks = tuple(sorted({int(k) for k in self.stats_ks}))
        if self.default_k not in self.lobe_ks:
            raise ValueError(f"default_k={self.default_k} must be one of lobe_ks={self.lobe_ks}")
        if not set(self.stats_ks) <= set(self.lobe_ks):
            raise ValueError(f"stats_ks={self.stats_ks} must be a subset of lobe_ks={self.lobe_ks}")
        if min(self.lobe_ks) < 2 or self.window < 1 or not 0 < self.test_frac < 1:
            raise ValueError("need lobe_ks >= 2, window >= 1 and 0 < test_frac < 1")
        if self.lobe_method not in ("exact_operator", "dense"):
            raise ValueError(f"lobe_method {self.lobe_method!r}: 'exact_operator' or 'dense'")
        if self.geo_method not in ("knn", "knn_lowrank", "dense"):
            raise ValueError(f"geo_method {self.geo_method!r}: 'knn', 'knn_lowrank' or 'dense'")
        if self.n_cooccur < 1 or self.geo_neighbors < 1 or self.cooccur_block_cells < 1:
            raise ValueError("need n_cooccur, geo_neighbors and cooccur_block_cells >= 1")
        lo, hi = self.spectrum_ranks
        if not 1 <= lo < hi:
            raise ValueError(f"spectrum_ranks {self.spectrum_ranks}: need 1 <= lo < hi")
