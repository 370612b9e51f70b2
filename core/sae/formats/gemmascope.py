"""Gemma Scope: params.npz with W_enc (d_model, d_sae), W_dec (d_sae, d_model), b_enc (d_sae,),
b_dec (d_model,), threshold (d_sae,); some files spell the matrices w_enc / w_dec.

JumpReLU, a = relu(pre) * (pre > threshold) with pre = x @ W_enc + b_enc: the input is NOT
shifted by b_dec (apply_b_dec_to_input = false). There is no config file, so the widths come
from the tensors and the site, where possible, from the release path (…-res/layer_12/…).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from core.sae.formats.weights import build_sae, make_config, matrix_shape, read_npz
from core.sae.model import SAE

WEIGHTS_FILE = "params.npz"
_LAYER = re.compile(r"^layer_(\d+)$")


def load_gemmascope(path: Path, dtype: torch.dtype = torch.float32) -> SAE:
    """A Gemma Scope folder (or its params.npz) -> JumpReLU SAE."""
    file = path / WEIGHTS_FILE if path.is_dir() else path
    raw = read_npz(file)
    tensors = {_our_name(k): v for k, v in raw.items()}
    d_in, d_sae = matrix_shape(tensors, "W_enc", file)
    cfg = make_config(
        file,
        d_in=d_in,
        d_sae=d_sae,
        architecture="jumprelu",
        apply_b_dec_to_input=False,
        hook_name=guess_site(file),
        source=str(file),
    )
    return build_sae(cfg, tensors, file, dtype)


def _our_name(key: str) -> str:
    return "W_" + key[2:] if key.startswith("w_") else key  # w_enc -> W_enc


def guess_site(file: Path) -> str:
    """'L12/resid_post' or 'L12/mlp_out' from a Gemma Scope release path, else ''.

    Attention releases read hook_z (the heads before o_proj), which is not an atlas site.
    """
    layers = [int(m[1]) for part in file.parts if (m := _LAYER.match(part))]
    if not layers:
        return ""
    text = str(file).lower()
    if "-res" in text:
        return f"L{layers[-1]}/resid_post"
    if "-mlp" in text:
        return f"L{layers[-1]}/mlp_out"
    return ""
