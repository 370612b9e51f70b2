"""Configuration of a synthetic atlas (saved in the atlas as runs.config["synthetic"])."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SyntheticConfig:
    saes: int = 16
    """Residual SAEs, one per layer: L0/resid_post … L{saes-1}/resid_post."""
    width: int = 65536
    """Features per SAE (d_sae)."""
    top: int = 4
    """Top-activating examples per live feature (kind 'top', rank 1..top)."""
    interval: int = 2
    """Interval examples per live feature (kind 'interval'), each from a different tenth of
    [0, max_act]."""
    window: int = 16
    """Tokens per example window (cut from one document; the activating token near the middle)."""
    docs: int = 4000
    """Documents in the synthetic corpus."""
    doc_len: int = 256
    """Tokens per document (at least `window`)."""
    unique_texts: int = 131072
    """Distinct explanation texts, all embedded; each SAE draws its texts from this pool without
    replacement (so no two features of one SAE share one) when the pool is at least `width`."""
    seed: int = 0
    """Seed of every random draw; the run id is synthetic-<seed>."""
    dead_frac: float = 0.02
    """Mean share of features that never fire (varies a little per SAE)."""
    model: str = "default"
    """Model spec whose tokenizer supplies the token ids and strings."""
    d_in: int = 576
    """SAE input width recorded in `saes` (the default model's d_model)."""
    k: int = 32
    """Active latents per token recorded in `saes` (TopK)."""
    embed_batch: int = 64
    """Texts per embedding batch."""
    embed_cache: bool = True
    """Keep the pool's embeddings in the cache folder (SAE_ATLAS_CACHE) and reuse them when the
    same texts are generated again (131k texts: 200 MB on disk, ~3 min of embedding saved)."""

    memory_limit: str | None = "4GB"
    """DuckDB's memory limit while writing (its buffer pool otherwise grows towards 80 % of
    RAM as tables are written); None keeps DuckDB's default."""

    def __post_init__(self) -> None:
        for name in ("saes", "width", "top", "window", "docs", "doc_len", "unique_texts", "k"):
            if getattr(self, name) < 1:
                raise ValueError(f"synthetic {name} must be >= 1, got {getattr(self, name)}")
        if self.interval < 0:
            raise ValueError(f"synthetic interval must be >= 0, got {self.interval}")
        if self.doc_len < self.window:
            raise ValueError(f"doc_len ({self.doc_len}) must be >= window ({self.window})")
        if self.width < 64:
            raise ValueError(f"synthetic width must be >= 64 (lobes, neighbours), got {self.width}")
        if not 0.0 <= self.dead_frac < 0.5:
            raise ValueError(f"dead_frac must lie in [0, 0.5), got {self.dead_frac}")

    @property
    def run_id(self) -> str:
        return f"synthetic-{self.seed}"

    @property
    def n_tokens(self) -> int:
        return self.docs * self.doc_len

    @property
    def sae_ids(self) -> list[str]:
        return [f"L{i}/resid_post" for i in range(self.saes)]

    @property
    def with_replacement(self) -> bool:
        """Whether an SAE must reuse texts (the pool is smaller than an SAE)."""
        return self.unique_texts < self.width
