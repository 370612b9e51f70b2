"""One internal SAE type for every architecture and weight format (METHODS §1).

Shapes: W_enc (d_in, d_sae), W_dec (d_sae, d_in), b_enc (d_sae,), b_dec (d_in,),
threshold (d_sae,) for JumpReLU / thresholded BatchTopK.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch

Architecture = Literal["standard", "relu", "topk", "batchtopk", "jumprelu"]
Normalize = Literal["none", "expected_average_only_in", "constant_norm_rescale", "layer_norm"]
ARCHITECTURES = ("standard", "relu", "topk", "batchtopk", "jumprelu")


class SAEError(ValueError):
    """A weight file or config that cannot become an SAE; the message names the file and why."""


@dataclass
class SAEConfig:
    d_in: int
    """Width of the activation the SAE reads (the model's d_model for resid/mlp/attn sites)."""
    d_sae: int
    """Number of latents (features)."""
    architecture: str = "topk"
    """standard (ReLU) | topk | batchtopk | jumprelu."""
    k: int | None = None
    """Active latents per token for topk / batchtopk."""
    apply_b_dec_to_input: bool = True
    """Subtract b_dec from the input before encoding."""
    normalize_activations: str = "none"
    """none | expected_average_only_in | constant_norm_rescale | layer_norm."""
    norm_scale: float | None = None
    """Fixed input scale for expected_average_only_in (x * norm_scale)."""
    hook_name: str = ""
    """Site this SAE reads, in atlas terms, e.g. 'L12/resid_post'."""
    model_name: str = ""
    source: str = ""
    """Where the weights came from (path, hub id, or 'trained')."""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.architecture == "relu":
            self.architecture = "standard"
        if self.architecture not in ARCHITECTURES:
            raise SAEError(
                f"unknown SAE architecture {self.architecture!r}; known: {ARCHITECTURES}"
            )
        if self.architecture in ("topk", "batchtopk") and not self.k:
            raise SAEError(f"{self.architecture} SAE needs k")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SAE(torch.nn.Module):
    def __init__(self, cfg: SAEConfig, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.cfg = cfg
        d_in, d_sae = cfg.d_in, cfg.d_sae
        self.W_enc = torch.nn.Parameter(torch.zeros(d_in, d_sae, dtype=dtype))
        self.W_dec = torch.nn.Parameter(torch.zeros(d_sae, d_in, dtype=dtype))
        self.b_enc = torch.nn.Parameter(torch.zeros(d_sae, dtype=dtype))
        self.b_dec = torch.nn.Parameter(torch.zeros(d_in, dtype=dtype))
        self.threshold: torch.Tensor | None = None
        if cfg.architecture == "jumprelu" or "threshold" in cfg.extra:
            self.threshold = torch.nn.Parameter(
                torch.zeros(d_sae, dtype=dtype), requires_grad=False
            )

    @property
    def d_sae(self) -> int:
        return self.cfg.d_sae

    def state_tensors(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {
            "W_enc": self.W_enc,
            "W_dec": self.W_dec,
            "b_enc": self.b_enc,
            "b_dec": self.b_dec,
        }
        if self.threshold is not None:
            out["threshold"] = self.threshold
        return {k: v.detach() for k, v in out.items()}

    def load_tensors(self, tensors: dict[str, torch.Tensor], origin: str) -> SAE:
        """Copy tensors in, checking every shape; `origin` names the file in errors."""
        for name, target in self.state_tensors().items():
            if name not in tensors:
                raise SAEError(f"{origin}: missing tensor {name!r} (have {sorted(tensors)})")
            src = tensors[name]
            if tuple(src.shape) != tuple(target.shape):
                raise SAEError(
                    f"{origin}: tensor {name} has shape {tuple(src.shape)}, "
                    f"expected {tuple(target.shape)} for d_in={self.cfg.d_in}, d_sae={self.cfg.d_sae}"
                )
            with torch.no_grad():
                getattr(self, name).copy_(src.to(target.dtype))
        return self

    # ---- input normalisation -------------------------------------------------------------
    def _norm_in(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns the normalised input and the per-token scale needed to undo it."""
        mode = self.cfg.normalize_activations
        if mode == "constant_norm_rescale":
            scale = (self.cfg.d_in**0.5) / x.norm(dim=-1, keepdim=True).clamp_min(1e-8)
            return x * scale, scale
        if mode == "expected_average_only_in" and self.cfg.norm_scale:
            return x * self.cfg.norm_scale, None
        if mode == "layer_norm":
            mu, sd = self._ln_stats(x)
            return (x - mu) / sd, None
        return x, None

    @staticmethod
    def _ln_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., 1) mean and std + eps of layer_norm mode, as SAELens computes them."""
        return x.mean(-1, keepdim=True), x.std(-1, keepdim=True) + 1e-5

    # ---- encode / decode -----------------------------------------------------------------
    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """(..., d_in) -> (..., d_sae) pre-activations."""
        x, _ = self._norm_in(x.to(self.W_enc.dtype))
        if self.cfg.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        arch = self.cfg.architecture
        if arch == "standard":
            return torch.relu(pre)
        if arch == "jumprelu" or (arch == "batchtopk" and self.threshold is not None):
            assert self.threshold is not None
            return torch.relu(pre) * (pre > self.threshold)
        assert self.cfg.k is not None
        vals, idx = pre.topk(self.cfg.k, dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter_(-1, idx, torch.relu(vals))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(..., d_in) -> (..., d_sae) feature activations."""
        return self.activate(self.pre_acts(x))

    def encode_topk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse encode for TopK SAEs: (N, d_in) -> values (N, k), indices (N, k)."""
        pre = self.pre_acts(x)
        assert self.cfg.k is not None
        vals, idx = pre.topk(self.cfg.k, dim=-1, sorted=False)
        return torch.relu(vals), idx

    def decode(self, a: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """(..., d_sae) -> (..., d_in); `scale` undoes constant_norm_rescale."""
        out = a @ self.W_dec + self.b_dec
        if scale is not None:
            out = out / scale
        elif self.cfg.normalize_activations == "expected_average_only_in" and self.cfg.norm_scale:
            out = out / self.cfg.norm_scale
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction x̂ in the input's own units."""
        xf = x.to(self.W_enc.dtype)
        _, scale = self._norm_in(xf)
        out = self.decode(self.encode(xf), scale)
        if self.cfg.normalize_activations == "layer_norm":  # undo (x - mu) / sd
            mu, sd = self._ln_stats(xf)
            out = out * sd + mu
        return out.to(x.dtype)

    def unit_decoder(self) -> torch.Tensor:
        """(d_sae, d_in) decoder rows scaled to unit norm."""
        W = self.W_dec.detach().float()
        return W / W.norm(dim=-1, keepdim=True).clamp_min(1e-8)


Array = torch.Tensor | np.ndarray


def as_rows(acts: Array) -> torch.Tensor:
    """Activations (N, d_in) as a tensor without autograd history (numpy arrays are shared)."""
    t = torch.from_numpy(np.asarray(acts)) if isinstance(acts, np.ndarray) else acts
    if t.ndim != 2:
        raise ValueError(f"activations must be (N, d_in), got shape {tuple(t.shape)}")
    return t.detach()
