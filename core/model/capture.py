"""Activation capture: one forward pass feeds every SAE site, stopping after the deepest layer."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from core.model.hooks import StopForward, hooked
from core.model.sites import Site, decoder_layers, site_module


@torch.no_grad()
def capture(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    sites: Iterable[Site],
    stop_early: bool = True,
) -> dict[Site, torch.Tensor]:
    """input_ids (B, T) -> {site: activation (B, T, d)}; the forward stops after the deepest site."""
    sites = sorted(set(sites))
    store: dict[Site, torch.Tensor] = {}

    def keep(site: Site):
        def fn(out: torch.Tensor) -> None:
            store[site] = out.detach()

        return fn

    hooks = [(site_module(model, s), keep(s)) for s in sites]
    if stop_early and sites:
        deepest = decoder_layers(model)[max(s.layer for s in sites)]
        hooks.append((deepest, _raise_stop))  # registered last: runs after the capture hooks
    with hooked(hooks):
        try:
            model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        except StopForward:
            pass
    return store


def _raise_stop(_out: torch.Tensor) -> None:
    raise StopForward


@torch.no_grad()
def bare_forward(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    last_layer: int,
) -> None:
    """The same truncated forward with no capture: the benchmark's reference."""
    with hooked([(decoder_layers(model)[last_layer], _raise_stop)]):
        try:
            model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        except StopForward:
            pass
