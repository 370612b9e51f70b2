"""SAE sites: where in the model an SAE reads, e.g. 'L12/resid_post'.

resid_post of layer L = output of decoder block L (= hidden_states[L+1]);
mlp_out / attn_out = outputs of block L's MLP / attention submodules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

SITE_KINDS = ("resid_post", "mlp_out", "attn_out")
_SITE_RE = re.compile(r"^L(\d+)/(resid_post|mlp_out|attn_out)$")
# Common spellings from other tools, mapped to our kinds.
_ALIASES = [
    (re.compile(r"^blocks\.(\d+)\.hook_resid_post$"), "resid_post"),
    (re.compile(r"^blocks\.(\d+)\.hook_mlp_out$"), "mlp_out"),
    (re.compile(r"^blocks\.(\d+)\.hook_attn_out$"), "attn_out"),
    (re.compile(r"^(?:model\.)?layers\.(\d+)$"), "resid_post"),
    (re.compile(r"^(?:model\.)?layers\.(\d+)\.mlp$"), "mlp_out"),
    (re.compile(r"^(?:model\.)?layers\.(\d+)\.self_attn$"), "attn_out"),
]


class SiteError(ValueError):
    """An SAE site name that does not exist in this model."""


@dataclass(frozen=True, order=True)
class Site:
    layer: int
    kind: str

    @property
    def id(self) -> str:
        return f"L{self.layer}/{self.kind}"

    def __str__(self) -> str:
        return self.id

    @classmethod
    def parse(cls, name: str) -> Site:
        m = _SITE_RE.match(name.strip())
        if m:
            return cls(int(m.group(1)), m.group(2))
        for pattern, kind in _ALIASES:
            m = pattern.match(name.strip())
            if m:
                return cls(int(m.group(1)), kind)
        raise SiteError(
            f"unknown SAE site {name!r}: expected 'L<layer>/<kind>' with kind one of {SITE_KINDS} "
            "(or blocks.N.hook_resid_post / layers.N)"
        )


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The list of decoder blocks of an HF causal LM (Llama, Gemma, Qwen, GPT-2, NeoX...)."""
    for path in ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers"):
        obj: object = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, torch.nn.ModuleList):
            return obj
    raise SiteError(f"cannot find the decoder layers of {type(model).__name__}")


def site_module(model: torch.nn.Module, site: Site) -> torch.nn.Module:
    """The module whose output is the site's activation."""
    layers = decoder_layers(model)
    if not 0 <= site.layer < len(layers):
        raise SiteError(
            f"site {site}: layer {site.layer} out of range (model has {len(layers)} layers)"
        )
    block = layers[site.layer]
    if site.kind == "resid_post":
        return block
    names = ("mlp",) if site.kind == "mlp_out" else ("self_attn", "attn", "attention")
    for name in names:
        if hasattr(block, name):
            return getattr(block, name)
    raise SiteError(f"site {site}: block {type(block).__name__} has no {names[0]} submodule")
