"""SAELens folders: cfg.json + sae_weights.safetensors (+ sparsity.safetensors, ignored).

Reads v6 configs (nested `metadata`, older v6 builds call it `meta`) and pre-v6 flat configs
(hook_name / hook_point, activation_fn_str, activation_fn_kwargs.k). This is also the format we
save in: SAELens sees an inference-equivalent architecture, and the fields SAELens has no
place for live under "sae_atlas" so that save -> load round-trips exactly.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from core.model.sites import site_from_hook
from core.sae.formats.weights import build_sae, fold_decoder_norm, make_config, read_json
from core.sae.formats.weights import read_safetensors as read_weights
from core.sae.model import SAE, SAEError

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
SUPPORTED = ("standard", "relu", "jumprelu", "topk", "batchtopk")
NORMALIZE = ("none", "expected_average_only_in", "constant_norm_rescale", "layer_norm")
ATLAS_KEY = "sae_atlas"


def load_saelens(path: Path, dtype: torch.dtype = torch.float32) -> SAE:
    """SAELens folder (or its cfg.json / weights file) -> SAE; bf16/fp16 weights become `dtype`."""
    folder = path if path.is_dir() else path.parent
    cfg_path, weights_path = folder / CFG_FILE, folder / WEIGHTS_FILE
    raw = read_json(cfg_path)
    atlas: dict[str, Any] = raw.get(ATLAS_KEY) or {}
    meta: dict[str, Any] = raw.get("metadata") or raw.get("meta") or raw  # pre-v6: flat
    arch = atlas.get("architecture") or _architecture(raw, cfg_path)
    tensors = _fold_legacy(read_weights(weights_path), raw, dtype)
    extra = dict(atlas.get("extra") or {})
    if arch == "batchtopk" and "threshold" in tensors:
        extra["threshold"] = True  # tells SAE to keep the per-latent threshold
    cfg = make_config(
        cfg_path,
        d_in=_int(raw, "d_in", cfg_path),
        d_sae=_int(raw, "d_sae", cfg_path),
        architecture=arch,
        k=_k(raw, cfg_path),
        apply_b_dec_to_input=bool(raw.get("apply_b_dec_to_input", True)),
        normalize_activations=_normalize(raw.get("normalize_activations"), cfg_path),
        norm_scale=atlas.get("norm_scale"),
        hook_name=_hook_name(meta, verbatim=bool(atlas)),
        model_name=str(meta.get("model_name") or ""),
        source=str(atlas["source"]) if "source" in atlas else str(folder),
        extra=extra,
    )
    if cfg.normalize_activations == "expected_average_only_in" and not cfg.norm_scale:
        warnings.warn(
            f"{cfg_path}: expected_average_only_in without a known scale; inputs are used "
            "unscaled (SAELens does the same when its release table has no factor)",
            stacklevel=2,
        )
    return build_sae(cfg, tensors, weights_path, dtype)


def _architecture(raw: dict[str, Any], cfg_path: Path) -> str:
    arch = str(raw.get("architecture") or "standard")
    act = raw.get("activation_fn_str") or raw.get("activation_fn")  # pre-v6
    if arch == "standard" and act == "topk":
        arch = "topk"
    if arch not in SUPPORTED:
        raise SAEError(f"{cfg_path}: unsupported SAE architecture {arch!r}; supported: {SUPPORTED}")
    return arch


def _hook_name(meta: dict[str, Any], verbatim: bool) -> str:
    """Atlas site name; files we wrote already hold one, so keep those as they are."""
    hook = str(meta.get("hook_name") or meta.get("hook_point") or "")
    return hook if verbatim else site_from_hook(hook)


def _int(raw: dict[str, Any], key: str, cfg_path: Path) -> int:
    if key not in raw:
        raise SAEError(f"{cfg_path}: config has no {key!r}")
    return int(raw[key])


def _k(raw: dict[str, Any], cfg_path: Path) -> int | None:
    k = raw.get("k") or (raw.get("activation_fn_kwargs") or {}).get("k")
    if k is None:
        return None
    if float(k) != int(float(k)):  # SAELens allows a float k for BatchTopK (an average)
        warnings.warn(f"{cfg_path}: k={k} rounded to {round(float(k))}", stacklevel=3)
    return int(round(float(k)))


def _normalize(value: Any, cfg_path: Path) -> str:
    if value is None or value is False:
        return "none"
    if value is True:  # pre-v6 boolean meant the April-update scaling
        return "expected_average_only_in"
    if value not in NORMALIZE:
        raise SAEError(f"{cfg_path}: unknown normalize_activations {value!r}; known: {NORMALIZE}")
    return str(value)


def _fold_legacy(
    t: dict[str, torch.Tensor], raw: dict[str, Any], dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """Fold options our SAE has no switch for into the weights (exactly equivalent)."""
    t = {k: v.to(dtype) if v.is_floating_point() else v for k, v in t.items()}
    if "log_threshold" in t and "threshold" not in t:  # a JumpReLU training checkpoint
        t["threshold"] = t.pop("log_threshold").exp()
    sf = t.pop("scaling_factor", None)  # pre-v6 finetuning scale: acts * sf before W_dec
    if sf is not None and "W_dec" in t:
        t["W_dec"] = t["W_dec"] * sf[:, None]
    if raw.get("rescale_acts_by_decoder_norm") and {"W_enc", "b_enc", "W_dec"} <= t.keys():
        t = fold_decoder_norm(t)
    return t


# ---- saving ------------------------------------------------------------------------------
def saelens_config(sae: SAE) -> dict[str, Any]:
    """v6 cfg.json for `sae`, plus our own fields under "sae_atlas"."""
    c = sae.cfg
    visible = c.architecture  # what SAELens should instantiate for the same inference maths
    if c.architecture == "batchtopk":
        visible = "jumprelu" if sae.threshold is not None else "topk"
    cfg: dict[str, Any] = {
        "architecture": visible,
        "d_in": c.d_in,
        "d_sae": c.d_sae,
        "dtype": str(sae.W_enc.dtype).removeprefix("torch."),
        "device": "cpu",
        "apply_b_dec_to_input": c.apply_b_dec_to_input,
        "normalize_activations": c.normalize_activations,
        "reshape_activations": "none",
        "metadata": {
            "model_name": c.model_name,
            "hook_name": c.hook_name,
            "sae_lens_version": "6.0.0",  # marks the config schema, not a SAELens install
        },
        ATLAS_KEY: {
            "architecture": c.architecture,
            "norm_scale": c.norm_scale,
            "source": c.source,
            "extra": c.extra,
        },
    }
    if c.k is not None:
        cfg["k"] = c.k
    return cfg


def save_saelens(sae: SAE, folder: Path) -> Path:
    """Write cfg.json + sae_weights.safetensors into `folder`; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        text = json.dumps(saelens_config(sae), indent=2)
    except TypeError as e:
        raise SAEError(f"{folder / CFG_FILE}: cfg.extra is not JSON-serialisable ({e})") from e
    tensors = {k: v.detach().cpu().contiguous() for k, v in sae.state_tensors().items()}
    save_file(tensors, str(folder / WEIGHTS_FILE))
    (folder / CFG_FILE).write_text(text, encoding="utf-8")
    return folder
