"""Weight formats of other projects -> our one SAE type (METHODS §1).

`load_sae` is the entry point: a local path or a hub id, the format detected from the files
present unless named, and the SAE's width checked against the model's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from core.sae.formats.gemmascope import load_gemmascope
from core.sae.formats.hub import is_hub_spec, resolve_hub
from core.sae.formats.llamascope import load_llamascope
from core.sae.formats.saelens import load_saelens, save_saelens
from core.sae.formats.sparsify import load_sparsify, resolve_hookpoint, sparsify_hookpoints
from core.sae.formats.weights import read_json
from core.sae.model import SAE, SAEError


class Loader(Protocol):
    def __call__(self, path: Path, dtype: torch.dtype = ...) -> SAE: ...


FORMATS: dict[str, Loader] = {
    "saelens": load_saelens,
    "sparsify": load_sparsify,
    "gemmascope": load_gemmascope,
    "llamascope": load_llamascope,
}

# (format, file that marks it), checked in order inside a folder
_MARKERS = (
    ("gemmascope", "params.npz"),
    ("llamascope", "hyperparams.json"),
    ("llamascope", "checkpoints/final.safetensors"),
    ("saelens", "sae_weights.safetensors"),
    ("sparsify", "sae.safetensors"),
)
_EXPECTED = (
    "cfg.json + sae_weights.safetensors (SAELens), cfg.json + sae.safetensors or layers.N/ "
    "(sparsify), params.npz (Gemma Scope), hyperparams.json + checkpoints/final.safetensors "
    "(Llama Scope)"
)


def detect_format(path: Path) -> str:
    """Format name for a folder or weight file, from the files present."""
    path = Path(path)
    if not path.exists():
        raise SAEError(f"{path}: no such file or folder")
    if path.is_file():
        return _format_of_file(path)
    for fmt, marker in _MARKERS:
        if (path / marker).is_file():
            return fmt
    if (path / "cfg.json").is_file():  # weights missing: the config still tells; the loader
        keys = read_json(path / "cfg.json")  # then reports the missing file by name
        return "sparsify" if "num_latents" in keys or "expansion_factor" in keys else "saelens"
    if sparsify_hookpoints(path):
        return "sparsify"
    raise SAEError(f"{path}: cannot tell the SAE format; expected {_EXPECTED}")


def _format_of_file(path: Path) -> str:
    if path.suffix == ".npz":
        return "gemmascope"
    if path.name in ("hyperparams.json", "final.safetensors"):
        return "llamascope"
    if path.name == "sae_weights.safetensors":
        return "saelens"
    if path.name == "sae.safetensors":
        return "sparsify"
    if path.name == "cfg.json":
        return detect_format(path.parent)
    raise SAEError(f"{path}: cannot tell the SAE format from this file; expected {_EXPECTED}")


def normalize_format(fmt: str) -> str:
    """'sae_lens', 'Gemma-Scope' … -> a FORMATS key."""
    key = fmt.lower().replace("_", "").replace("-", "").replace(" ", "")
    if key not in FORMATS:
        raise SAEError(f"unknown SAE format {fmt!r}; known: {sorted(FORMATS)}")
    return key


def load_sae(
    path: str | Path,
    fmt: str | None = None,
    expected_d_in: int | None = None,
    site: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> SAE:
    """Load an SAE from a folder, weight file or hub id ('hf:…', 'sae_lens:…').

    `expected_d_in` is the width of the model activation at `site`; a mismatch is an error
    that names the file. `site` also picks the hookpoint in a multi-layer sparsify folder and
    names the SAE's site when the files do not.
    """
    local = resolve_hub(path) if isinstance(path, str) and is_hub_spec(path) else Path(path)
    if not local.exists():
        raise SAEError(
            f"{local}: no such file or folder" + (f" (SAE for site {site!r})" if site else "")
        )
    fmt = normalize_format(fmt) if fmt else detect_format(local)
    if fmt == "sparsify":
        local = resolve_hookpoint(local, site)
    sae = FORMATS[fmt](local, dtype)
    if expected_d_in is not None and sae.cfg.d_in != expected_d_in:
        where = f"site {site!r}" if site else "the model"
        raise SAEError(
            f"{local}: SAE reads d_in={sae.cfg.d_in} but {where} has width {expected_d_in}; "
            "is this the SAE for another model or site?"
        )
    if site and not sae.cfg.hook_name:
        sae.cfg.hook_name = site
    if is_hub_spec(path):
        sae.cfg.source = str(path)
    return sae


__all__ = [
    "FORMATS",
    "Loader",
    "detect_format",
    "load_gemmascope",
    "load_llamascope",
    "load_sae",
    "load_saelens",
    "load_sparsify",
    "normalize_format",
    "resolve_hookpoint",
    "resolve_hub",
    "save_saelens",
    "sparsify_hookpoints",
]
