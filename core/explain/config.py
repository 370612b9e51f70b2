"""Configuration of the explain stage (METHODS §4): sampling, explainer back-end, scorers."""

from __future__ import annotations

from dataclasses import dataclass

EXPLAINERS = ("statistical", "openai", "local")
EMBED_DTYPES = ("auto", "float32", "bfloat16")
_COUNTS = ("n_train", "n_test", "n_random", "n_hard", "hard_neighbours", "random_pool",
           "n_tokens", "n_ngrams", "max_retries")  # fmt: skip
_AT_LEAST_ONE = ("concurrency", "per_prompt", "score_windows", "embed_batch", "embed_max_tokens",
                 "max_new_tokens", "local_batch")  # fmt: skip


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
    """Seeds the window samples and the order of the windows in scoring prompts."""
    n_tokens: int = 4
    """Tokens named by the statistical explainer."""
    n_ngrams: int = 2
    """N-grams (2 and 3 tokens ending at the firing token) named by the statistical explainer."""
    embed_batch: int = 64
    """Windows per forward pass of the embedding model."""
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
    """Seconds before a request to the endpoint counts as failed (and is retried)."""
    max_retries: int = 4
    """Retries of a failed request (timeout, connection error, 429, 5xx) by the openai client,
    with exponential backoff (0.5 s doubling to 8 s; a Retry-After header wins)."""
    max_new_tokens: int = 256
    """Most tokens the LLM may generate per explanation."""
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
        if self.embed_dtype not in EMBED_DTYPES:
            raise ValueError(f"embed_dtype must be one of {EMBED_DTYPES}, got {self.embed_dtype!r}")
        if self.window < 2 or self.n_quantiles < 1:
            raise ValueError("window must be >= 2 and n_quantiles >= 1")
        for names, low in ((_COUNTS, 0), (_AT_LEAST_ONE, 1)):
            for name in names:
                if getattr(self, name) < low:
                    raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if self.timeout_s <= 0 or min(self.price_in, self.price_out) < 0:
            raise ValueError("need timeout_s > 0 and prices >= 0")
