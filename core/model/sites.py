"""SAE sites: where in the model an SAE reads, e.g. 'L12/resid_post', and the one table of the
hook names other projects use for them.

resid_post of layer L = output of decoder block L (= hidden_states[L+1]);
mlp_out / attn_out = outputs of block L's MLP / attention submodules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a model is walked, so configs parse sites quickly
    import torch

SITE_KINDS = ("resid_post", "mlp_out", "attn_out")
_SITE_RE = re.compile(r"^L(\d+)/(resid_post|mlp_out|attn_out)$")
# TransformerLens hook names (SAELens, Llama Scope) and HF module paths (sparsify hookpoints,
# under any prefix: model.layers.N, transformer.h.N, gpt_neox.layers.N).
_ALIASES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^blocks\.(\d+)\.hook_resid_post$"), "resid_post"),
    (re.compile(r"^blocks\.(\d+)\.hook_mlp_out$"), "mlp_out"),
    (re.compile(r"^blocks\.(\d+)\.hook_attn_out$"), "attn_out"),
    (re.compile(r"^(?:[\w.]*\.)?(?:layers|h)\.(\d+)$"), "resid_post"),
    (re.compile(r"^(?:[\w.]*\.)?(?:layers|h)\.(\d+)\.mlp$"), "mlp_out"),
    (re.compile(r"^(?:[\w.]*\.)?(?:layers|h)\.(\d+)\.(?:self_attn|attn|attention)$"), "attn_out"),
)
# The input of block L is the output of block L-1; block 0's input (the embeddings) is no site.
_RESID_PRE = re.compile(r"^blocks\.(\d+)\.hook_resid_pre$")


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
        """'L12/resid_post', or another project's name for it ('blocks.12.hook_resid_post',
        'model.layers.12', 'blocks.13.hook_resid_pre', ...)."""
        site = _match(name.strip())
        if site is None:
            raise SiteError(
                f"unknown SAE site {name!r}: expected 'L<layer>/<kind>' with kind one of "
                f"{SITE_KINDS} (or blocks.N.hook_resid_post / layers.N)"
            )
        return site


def _match(name: str) -> Site | None:
    m = _SITE_RE.match(name)
    if m:
        return Site(int(m[1]), m[2])
    for pattern, kind in _ALIASES:
        m = pattern.match(name)
        if m:
            return Site(int(m[1]), kind)
    m = _RESID_PRE.match(name)
    if m and int(m[1]) > 0:
        return Site(int(m[1]) - 1, "resid_post")
    return None


def site_from_hook(hook: str) -> str:
    """A weight file's hook name -> the atlas site id ('blocks.5.hook_resid_post' ->
    'L5/resid_post'); a name that names no site is returned unchanged, so an unusual hook still
    reaches the user verbatim."""
    site = _match(hook.strip())
    return site.id if site else hook


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The list of decoder blocks of an HF causal LM (Llama, Gemma, Qwen, GPT-2, NeoX...)."""
    import torch

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
