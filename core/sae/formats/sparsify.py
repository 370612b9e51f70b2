"""EleutherAI sparsify checkpoints: one folder per hookpoint (`layers.N/`), each with cfg.json
{activation, k, num_latents, expansion_factor, normalize_decoder, multi_topk, skip_connection,
transcode, d_in} and sae.safetensors {encoder.weight (n, d_in), encoder.bias (n,),
W_dec (n, d_in), b_dec (d_in,), optional W_skip (d_in, d_in)}.

Encoding is TopK of relu((x - b_dec) @ encoder.weight.T + encoder.bias). Skip connections and
transcoders are refused: both reconstruct with more than the latents (or at another site),
so the SAE's decode, steering and feature flow would silently be wrong.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from core.model.sites import site_from_hook
from core.sae.formats.weights import (
    build_sae,
    make_config,
    matrix_shape,
    read_json,
    read_safetensors,
    take,
)
from core.sae.model import SAE, SAEError

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae.safetensors"


def sparsify_hookpoints(folder: Path) -> list[str]:
    """Hookpoint subfolders (each holding cfg.json) of a sparsify checkpoint, in natural order."""
    if not folder.is_dir():
        return []
    names = [p.name for p in folder.iterdir() if p.is_dir() and (p / CFG_FILE).is_file()]
    return sorted(names, key=_natural_key)


def _natural_key(name: str) -> list[tuple[int, int | str]]:
    # "layers.10" after "layers.9": numbers compare as numbers
    return [(0, int(s)) if s.isdigit() else (1, s) for s in re.split(r"(\d+)", name)]


def resolve_hookpoint(path: Path, site: str | None = None) -> Path:
    """The hookpoint folder to load: `path` itself, or the subfolder whose name or atlas site
    equals `site`, or the only subfolder there is."""
    if path.is_file():
        path = path.parent
    if (path / CFG_FILE).is_file():
        return path
    hookpoints = sparsify_hookpoints(path)
    if not hookpoints:
        raise SAEError(f"{path}: missing config file {CFG_FILE} (and no layers.N/ subfolders)")
    if site is not None:
        hits = [h for h in hookpoints if site in (h, site_from_hook(h))]
        if not hits:
            raise SAEError(f"{path}: no hookpoint for site {site!r}; have {hookpoints}")
        return path / hits[0]
    if len(hookpoints) == 1:
        return path / hookpoints[0]
    raise SAEError(
        f"{path}: holds {len(hookpoints)} hookpoints {hookpoints}; choose one (site=...)"
    )


def load_sparsify(path: Path, dtype: torch.dtype = torch.float32) -> SAE:
    """One sparsify hookpoint folder (or a parent with a single one) -> TopK SAE."""
    folder = resolve_hookpoint(path)
    cfg_path, weights_path = folder / CFG_FILE, folder / WEIGHTS_FILE
    raw = read_json(cfg_path)
    t = read_safetensors(weights_path)
    _refuse_unsupported(raw, t, cfg_path)
    n, d_in = matrix_shape(t, "encoder.weight", weights_path)
    d_in = int(raw.get("d_in") or d_in)
    n = int(raw.get("num_latents") or 0) or int(raw.get("expansion_factor") or 0) * d_in or n
    if raw.get("k") is None:
        raise SAEError(f"{cfg_path}: config has no 'k'")
    tensors = {
        "W_enc": take(t, "encoder.weight", (n, d_in), weights_path).T,  # (d_in, n)
        "b_enc": take(t, "encoder.bias", (n,), weights_path),
        "W_dec": take(t, "W_dec", (n, d_in), weights_path),
        "b_dec": take(t, "b_dec", (d_in,), weights_path),
    }
    cfg = make_config(
        cfg_path,
        d_in=d_in,
        d_sae=n,
        architecture="topk",
        k=int(raw["k"]),
        apply_b_dec_to_input=True,
        hook_name=site_from_hook(folder.name),
        source=str(folder),
    )
    return build_sae(cfg, tensors, weights_path, dtype)


def _refuse_unsupported(raw: dict[str, Any], t: dict[str, torch.Tensor], cfg_path: Path) -> None:
    if raw.get("transcode"):
        raise SAEError(f"{cfg_path}: a transcoder (transcode=true); only SAEs are supported")
    if raw.get("skip_connection") or "W_skip" in t:
        raise SAEError(
            f"{cfg_path}: has a skip connection (W_skip); its reconstruction is not latents-only, "
            "which the atlas assumes, so it is not supported"
        )
    activation = raw.get("activation", "topk")
    if activation != "topk":
        raise SAEError(f"{cfg_path}: unsupported activation {activation!r}; supported: 'topk'")
