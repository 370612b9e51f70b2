"""Configuration of TopK SAE training (METHODS §2), kept free of torch so that configs and
`--help` load fast."""

from __future__ import annotations

from dataclasses import dataclass

B_PRE_INITS = ("geometric_median", "mean")


@dataclass
class TrainConfig:
    d_sae: int = 2048
    """Number of latents of a trained SAE."""
    k: int = 32
    """Active latents per token of a trained TopK SAE (0 < k < d_sae)."""
    lr: float = 2e-3
    """Adam learning rate. Measured on SmolLM2 (4,608 latents, one pass over 200k tokens): 2e-3
    reached FVU 0.24, where sparsify's width rule 2e-4 / sqrt(d_sae / 2**14) (3.8e-4 at that
    width) left 0.36. Lower it for much wider SAEs or much more data."""
    batch_size: int = 1024
    """Tokens per optimiser step; on ~200k tokens, small batches give enough steps for a low FVU."""
    epochs: float = 3.0
    """Passes over the activations (fractions allowed); token order is reshuffled each pass."""
    auxk_coef: float = 1 / 32
    """Weight of the AuxK loss (OpenAI: 1/32); 0 turns it off."""
    auxk_k: int | None = None
    """Dead latents used by AuxK per token; None = d_in // 2 (OpenAI appendix B.1)."""
    dead_tokens: int | None = None
    """Tokens without firing after which a latent counts as dead (and joins AuxK). OpenAI uses
    10M on billions of tokens; None = min(10M, max(batch_size, training tokens // 4)). Shorter
    windows flag rare-but-alive latents, and AuxK then pushes them down: measured on SmolLM2 L12
    (d_sae 4096, k 16, 60k tokens) a tenth of the run doubled the dead fraction, a quarter
    left it unchanged."""
    lr_decay_frac: float = 0.2
    """Final fraction of the steps over which the learning rate decays linearly to 0."""
    b_pre_init: str = "geometric_median"
    """geometric_median | mean: initial b_pre (= b_dec) from a data sample."""
    normalize: bool = True
    """Train on inputs scaled to mean norm sqrt(d_in); the scale is folded into the result."""
    seed: int = 0
    """Seeds the initialisation and the token order."""
    device: str = "auto"
    """Where the SAE trains: auto (GPU when present) | cpu | cuda | cuda:N."""

    def __post_init__(self) -> None:
        if self.d_sae <= 0:
            raise ValueError(f"d_sae must be > 0, got {self.d_sae}")
        if not 0 < self.k < self.d_sae:
            raise ValueError(f"need 0 < k < d_sae, got k={self.k}, d_sae={self.d_sae}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.epochs <= 0 or self.batch_size < 2:
            raise ValueError(
                f"need epochs > 0 and batch_size >= 2, got {self.epochs} and {self.batch_size}"
            )
        if self.auxk_coef < 0 or not 0 <= self.lr_decay_frac <= 1:
            raise ValueError("need auxk_coef >= 0 and lr_decay_frac in [0, 1]")
        for name in ("auxk_k", "dead_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None (the default rule), got {value}")
        if self.b_pre_init not in B_PRE_INITS:
            raise ValueError(f"b_pre_init must be one of {B_PRE_INITS}, got {self.b_pre_init!r}")
