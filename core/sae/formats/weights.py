"""Reading SAE config and weight files, shared by the format adapters.

Every failure becomes an `SAEError` whose message starts with the file it is about, so a build
that loads twenty SAEs says which one is broken and why.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from core.sae.model import SAE, SAEConfig, SAEError


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, or an SAEError naming the file."""
    if not path.is_file():
        raise SAEError(f"{path}: missing config file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SAEError(f"{path}: not a readable JSON config ({e})") from e
    if not isinstance(data, dict):
        raise SAEError(f"{path}: config must be a JSON object, got {type(data).__name__}")
    return data


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a .safetensors file on CPU, in the file's dtype."""
    if not path.is_file():
        raise SAEError(f"{path}: missing weight file")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise SAEError(f"{path}: corrupt or truncated safetensors file ({e})") from e


def read_npz(path: Path) -> dict[str, torch.Tensor]:
    """All arrays of a .npz file as CPU tensors (no pickles)."""
    if not path.is_file():
        raise SAEError(f"{path}: missing weight file")
    try:
        # our own handle: np.load leaks the one it opens when the zip is corrupt
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as data:
            arrays = {key: np.ascontiguousarray(data[key]) for key in data.files}
    except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError, KeyError) as e:
        raise SAEError(f"{path}: corrupt or truncated .npz file ({e})") from e
    return {key: torch.from_numpy(arr) for key, arr in arrays.items()}


def take(
    tensors: dict[str, torch.Tensor], name: str, shape: tuple[int, ...] | None, origin: Path
) -> torch.Tensor:
    """Tensor `name` as stored in the file, checked against `shape` (None: any shape)."""
    if name not in tensors:
        raise SAEError(f"{origin}: missing tensor {name!r} (file has {sorted(tensors)})")
    t = tensors[name]
    if shape is not None and tuple(t.shape) != shape:
        raise SAEError(f"{origin}: tensor {name!r} has shape {tuple(t.shape)}, expected {shape}")
    return t


def matrix_shape(tensors: dict[str, torch.Tensor], name: str, origin: Path) -> tuple[int, int]:
    """Shape of a 2-D tensor, used to read an SAE's widths when no config states them."""
    t = take(tensors, name, None, origin)
    if t.ndim != 2:
        raise SAEError(f"{origin}: tensor {name!r} should be 2-D, has shape {tuple(t.shape)}")
    return int(t.shape[0]), int(t.shape[1])


def check_finite(tensors: dict[str, torch.Tensor], origin: Path) -> None:
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise SAEError(f"{origin}: tensor {name!r} contains NaN or inf")


def build_sae(
    cfg: SAEConfig, tensors: dict[str, torch.Tensor], origin: Path, dtype: torch.dtype
) -> SAE:
    """An inference SAE from tensors already in our names (W_enc, W_dec, b_enc, b_dec, threshold)."""
    check_finite(tensors, origin)
    sae = SAE(cfg, dtype=dtype).load_tensors(tensors, str(origin))
    sae.requires_grad_(False)
    return sae.eval()


def make_config(origin: Path, **fields: Any) -> SAEConfig:
    """SAEConfig whose own validation errors (unknown architecture, missing k) name the file."""
    try:
        return SAEConfig(**fields)
    except SAEError as e:
        raise SAEError(f"{origin}: {e}") from e


def decoder_norms(W_dec: torch.Tensor) -> torch.Tensor:
    """(d_sae, d_in) -> (d_sae,) row norms, floored so that dead all-zero rows stay finite."""
    return W_dec.norm(dim=-1).clamp_min(torch.finfo(W_dec.dtype).tiny)


def fold_decoder_norm(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Move decoder row norms into the encoder: the same reconstruction, unit decoder rows.

    For SAEs that rank latents by pre * ‖W_dec[i]‖ (SAELens rescale_acts_by_decoder_norm,
    lm_saes sparsity_include_decoder_norm): pre' = pre * n, W_dec' = W_dec / n.
    """
    n = decoder_norms(t["W_dec"])  # (d_sae,)
    return {**t, "W_enc": t["W_enc"] * n, "b_enc": t["b_enc"] * n, "W_dec": t["W_dec"] / n[:, None]}
