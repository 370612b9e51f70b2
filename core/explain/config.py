"""Configuration of the explain stage (METHODS §4): sampling, explainer back-end, scorers."""

from __future__ import annotations

from dataclasses import dataclass

EXPLAINERS = ("statistical", "openai", "local")


@dataclass
class ExplainConfig:
    explainer: str = "statistical"
    """statistical (offline default) | openai (any OpenAI-compatible endpoint) | local (a transformers model)."""
    window: int = 32
    """Tokens per fixed, non-overlapping corpus window (delphi); each window is embedded once."""
    n_quantiles: int = 10
    """Equal-count quantiles of a feature's activating windows ranked by their max activation."""
    n_train: int = 40
    """Explainer examples per feature, spread evenly over the quantiles."""
    n_test: int = 50
    """Held-out activating windows per feature for scoring, spread over the quantiles."""
    n_random: int = 50
    """Random non-activating windows per feature for scoring."""
    n_hard: int = 50
    """Non-activating windows taken from neighbouring features' examples (the harder negatives)."""
    hard_neighbours: int = 5
    """How many decoder-cosine neighbours supply the hard negatives."""
    random_pool: int = 1000
    """Random negatives come from this many corpus windows, shared by all features (embedded once)."""
    seed: int = 0
    n_tokens: int = 4
    """Tokens named by the statistical explainer."""
    n_ngrams: int = 2
    """N-grams (2 and 3 tokens ending at the firing token) named by the statistical explainer."""
    embed_batch: int = 64
    embed_dtype: str = "auto"
    """auto (bfloat16 where the CPU/GPU computes it natively, else float32) | float32 | bfloat16."""
    embed_max_tokens: int = 64
    """Word pieces kept per window for the embedding model."""
    device: str = "auto"
    """Device of the embedding model and the local LLM: auto | cpu | cuda | mps."""
    base_url: str | None = None
    """OpenAI-compatible endpoint (default: $OPENAI_BASE_URL or https://api.openai.com/v1)."""
    model: str | None = None
    """Chat model for openai (default: $OPENAI_MODEL); for local, a model spec ('default' = SmolLM2)."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (never stored)."""
    concurrency: int = 8
    """Simultaneous requests to the endpoint."""
    timeout_s: float = 60.0
    max_retries: int = 4
    """Retries of a failed request (network error, timeout, 429, 5xx) with exponential backoff."""
    backoff_s: float = 1.0
    """First backoff; doubled at each retry (a Retry-After header wins)."""
    max_new_tokens: int = 256
    local_batch: int = 8
    """Prompts per generate() call of the local back-end."""
    llm_scores: bool = True
    """With an LLM explainer, also compute detection and fuzzing scores with the same model."""
    score_windows: int = 10
    """Activating and as many non-activating windows per feature for detection/fuzzing."""
    per_prompt: int = 5
    """Windows shown per detection/fuzzing prompt."""
    price_in: float = 0.0
    """USD per million prompt tokens, for the cost summary (0: unknown)."""
    price_out: float = 0.0
    """USD per million completion tokens, for the cost summary."""

    def __post_init__(self) -> None:
        if self.explainer not in EXPLAINERS:
            raise ValueError(f"explainer must be one of {EXPLAINERS}, got {self.explainer!r}")
        if self.window < 2 or self.n_quantiles < 1:
            raise ValueError("window must be >= 2 and n_quantiles >= 1")
        if min(self.n_train, self.n_test, self.n_random, self.n_hard) < 0:
            raise ValueError("sample sizes must be >= 0")
        if self.concurrency < 1 or self.per_prompt < 1:
            raise ValueError("concurrency and per_prompt must be >= 1")
