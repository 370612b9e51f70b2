"""Llama Scope (OpenMOSS lm_saes): hyperparams.json + checkpoints/final.safetensors with
encoder.weight (d_sae, d), encoder.bias (d_sae,), decoder.weight (d, d_sae), decoder.bias (d,).

lm_saes inference, which we reproduce:
  x' = x * sqrt(d) / avg_norm_in                    (norm_activation "dataset-wise")
  pre = x' @ encoder.weight.T + encoder.bias         (no b_dec shift by default)
  score = pre * ‖decoder column‖  if sparsity_include_decoder_norm, else pre
  a = pre * (score > jump_relu_threshold)            (one scalar threshold)
  x̂ = (a @ decoder.weight.T + decoder.bias) * avg_norm_out / sqrt(d)
The scalar threshold on the norm-weighted score becomes a per-latent threshold thr / ‖col‖ on
pre, so activations keep lm_saes' units.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from core.model.sites import site_from_hook
from core.sae.formats.weights import (
    build_sae,
    decoder_norms,
    fold_decoder_norm,
    make_config,
    matrix_shape,
    read_json,
    read_safetensors,
    take,
)
from core.sae.model import SAE, SAEError

HP_FILE = "hyperparams.json"
WEIGHTS_FILE = "checkpoints/final.safetensors"


def load_llamascope(path: Path, dtype: torch.dtype = torch.float32) -> SAE:
    """A Llama Scope folder (or its hyperparams.json / final.safetensors) -> SAE."""
    folder = _folder(path)
    hp_path, weights_path = folder / HP_FILE, folder / WEIGHTS_FILE
    hp = read_json(hp_path)
    _refuse_transcoder(hp, hp_path)
    raw = read_safetensors(weights_path)
    d_sae, d = matrix_shape(raw, "encoder.weight", weights_path)
    d = int(hp.get("d_model") or d)
    d_sae = int(hp.get("d_sae") or int(hp.get("expansion_factor") or 0) * d or d_sae)
    arch, k = _activation(hp, hp_path)
    mode, scale, out_ratio = _normalisation(hp, d, hp_path)
    t = _tensors(raw, hp, d, d_sae, weights_path, dtype)
    if arch == "jumprelu":
        t["threshold"] = _threshold(hp, t["W_dec"], hp_path)
    elif hp.get("sparsity_include_decoder_norm"):
        t = fold_decoder_norm(t)  # TopK ranks pre * ‖col‖; acts come out in those units
    shifts_input = bool(hp.get("apply_decoder_bias_to_pre_encoder", False))
    t = _rescale_output(t, out_ratio, shifts_input)
    cfg = make_config(
        hp_path,
        d_in=d,
        d_sae=d_sae,
        architecture=arch,
        k=k,
        apply_b_dec_to_input=shifts_input,
        normalize_activations=mode,
        norm_scale=scale,
        hook_name=site_from_hook(str(hp.get("hook_point_in") or "")),
        model_name=str(hp.get("model_name") or ""),
        source=str(folder),
    )
    return build_sae(cfg, t, weights_path, dtype)


def _folder(path: Path) -> Path:
    if path.is_dir():
        return path
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def _refuse_transcoder(hp: dict[str, Any], hp_path: Path) -> None:
    hook_in, hook_out = hp.get("hook_point_in"), hp.get("hook_point_out")
    if hook_in and hook_out and hook_in != hook_out:
        raise SAEError(
            f"{hp_path}: a transcoder ({hook_in} -> {hook_out}); only same-site SAEs are supported"
        )


def _activation(hp: dict[str, Any], hp_path: Path) -> tuple[str, int | None]:
    act = str(hp.get("act_fn") or "jumprelu").lower()
    if act == "jumprelu":
        return "jumprelu", None  # top_k, if present, is training lineage only
    if act in ("topk", "batchtopk"):
        if not hp.get("top_k"):
            raise SAEError(f"{hp_path}: act_fn {act!r} needs top_k")
        return act, int(hp["top_k"])
    if act == "relu":
        return "standard", None
    raise SAEError(f"{hp_path}: unsupported act_fn {act!r}; supported: jumprelu, topk, relu")


def _normalisation(hp: dict[str, Any], d: int, hp_path: Path) -> tuple[str, float | None, float]:
    """(normalize_activations, norm_scale, avg_norm_out / avg_norm_in)."""
    avg = hp.get("dataset_average_activation_norm")
    mode = str(hp.get("norm_activation") or ("dataset-wise" if avg else "none"))
    if mode == "token-wise":
        return "constant_norm_rescale", None, 1.0
    if mode in ("none", "inference"):  # "inference": already folded into the weights
        return "none", None, 1.0
    if mode != "dataset-wise":
        raise SAEError(f"{hp_path}: unknown norm_activation {mode!r}")
    norm_in = _average_norm(avg, ("in", hp.get("hook_point_in")))
    norm_out = _average_norm(avg, ("out", hp.get("hook_point_out"))) or norm_in
    if not norm_in or norm_in <= 0 or not norm_out or norm_out <= 0:
        raise SAEError(
            f"{hp_path}: dataset-wise normalisation needs a positive "
            f"dataset_average_activation_norm, got {avg!r}"
        )
    return "expected_average_only_in", math.sqrt(d) / norm_in, norm_out / norm_in


def _average_norm(avg: Any, keys: tuple[Any, ...]) -> float | None:
    if isinstance(avg, (int, float)):
        return float(avg)
    if isinstance(avg, dict):
        for key in keys:
            if key in avg:
                return float(avg[key])
    return None


def _tensors(
    raw: dict[str, torch.Tensor],
    hp: dict[str, Any],
    d: int,
    d_sae: int,
    origin: Path,
    dtype: torch.dtype,
) -> dict[str, torch.Tensor]:
    """Our names and layout, in `dtype` (bf16 files become float32 by default)."""
    if "decoder.bias" in raw or hp.get("use_decoder_bias", True):
        b_dec = take(raw, "decoder.bias", (d,), origin)
    else:
        b_dec = torch.zeros(d)
    t = {
        "W_enc": take(raw, "encoder.weight", (d_sae, d), origin).T,  # (d, d_sae)
        "b_enc": take(raw, "encoder.bias", (d_sae,), origin),
        "W_dec": take(raw, "decoder.weight", (d, d_sae), origin).T,  # (d_sae, d)
        "b_dec": b_dec,
    }
    return {k: v.to(dtype) for k, v in t.items()}


def _rescale_output(
    t: dict[str, torch.Tensor], ratio: float, shifts_input: bool
) -> dict[str, torch.Tensor]:
    """Fold avg_norm_out / avg_norm_in into the decoder: our decode divides by the "in" factor,
    lm_saes by sqrt(d) / avg_norm_out. Pre-activations stay as they were."""
    if ratio == 1.0:
        return t
    b_dec = t["b_dec"] * ratio
    b_enc = t["b_enc"] + (b_dec - t["b_dec"]) @ t["W_enc"] if shifts_input else t["b_enc"]
    return {**t, "W_dec": t["W_dec"] * ratio, "b_dec": b_dec, "b_enc": b_enc}


def _threshold(hp: dict[str, Any], W_dec: torch.Tensor, hp_path: Path) -> torch.Tensor:
    """(d_sae,) threshold on pre equivalent to lm_saes' scalar threshold on its score.

    Our JumpReLU also applies relu, which changes nothing for the positive thresholds
    Llama Scope ships.
    """
    if "jump_relu_threshold" not in hp:
        raise SAEError(f"{hp_path}: jumprelu SAE without jump_relu_threshold")
    thr = torch.full((W_dec.shape[0],), float(hp["jump_relu_threshold"]), dtype=W_dec.dtype)
    if hp.get("sparsity_include_decoder_norm"):
        thr = thr / decoder_norms(W_dec)  # pre * ‖col‖ > thr  <=>  pre > thr / ‖col‖
    return thr
