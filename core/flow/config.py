"""Configuration of the flow stage (METHODS §6), saved with the atlas as part of the build config."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FlowConfig:
    top_k: int = 5
    """Matches stored per feature and direction (rank 1 is the predecessor / successor)."""
    t_r: float = 0.5
    """s(R) at or above this: the feature was carried from the previous residual layer."""
    t_m: float = 0.25
    """s(M) at or above this: an MLP-output feature explains the residual feature."""
    t_a: float = 0.25
    """s(A) at or above this: an attention-output feature explains the residual feature."""
    per_layer: dict[str, dict[str, float]] = field(default_factory=dict)
    """Threshold overrides per residual SAE, e.g. {'L13/resid_post': {'t_r': 0.6}}."""
    chain_min_module: float = 0.15
    """Module (MLP / attention) predecessors below this cosine are left out of flow graphs."""
    n_bins: int = 50
    """Bins of the score histograms over [0, 1]."""
    n_random: int = 0
    """Random unit directions for the chance-level score; 0 = as many as the source SAE has."""
    val_pairs: int = 500
    """Matched pairs (and as many random pairs) per layer pair for the co-firing check."""
    cofire_overlap: float = 0.5
    """A pair co-fires when at least this share of the rarer feature's firings are shared."""
    seed: int = 0
    """Seed of the random baseline directions and of the pair samples."""
    chunk: int = 4096
    """Rows per block of the cosine matrix (bounds memory for wide SAEs)."""

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"flow top_k must be >= 1, got {self.top_k}")
        for name in ("t_r", "t_m", "t_a", "chain_min_module", "cofire_overlap"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"flow {name} must lie in [0, 1], got {v}")
        for name in ("n_bins", "chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"flow {name} must be >= 1, got {getattr(self, name)}")
        if self.n_random < 0 or self.val_pairs < 0:
            raise ValueError("flow n_random and val_pairs must be >= 0")
        for sae_id, over in self.per_layer.items():
            bad = set(over) - {"t_r", "t_m", "t_a"}
            if bad:
                raise ValueError(f"flow per_layer[{sae_id!r}]: unknown thresholds {sorted(bad)}")

    def thresholds(self, sae_id: str) -> dict[str, float]:
        """{'R': t_r, 'M': t_m, 'A': t_a} for one residual SAE, overrides applied."""
        over = self.per_layer.get(sae_id, {})
        return {
            "R": over.get("t_r", self.t_r),
            "M": over.get("t_m", self.t_m),
            "A": over.get("t_a", self.t_a),
        }
