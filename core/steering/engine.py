"""Applying interventions: one forward hook per site, always removed (METHODS §7).

`steering(model, prepared)` attaches the hooks for a block. Which rows and positions are
steered is told per forward pass with `Steerer.set_step(StepMask)`; with no mask every
position of every row is steered (handy for a single forward pass).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from core.model.hooks import TensorHook, hooked
from core.model.sites import Site, site_module
from core.sae.model import SAE
from core.steering.interventions import Intervention, SteeringError


@dataclass
class SaeEntry:
    """One SAE as the steering engine needs it."""

    sae_id: str
    site: Site
    sae: SAE
    max_act: torch.Tensor
    """(d_sae,) the atlas's max activation per feature (NaN where unknown)."""


class SaeBank:
    """SAEs by id, given ready or as loaders called once on first use (thread-safe)."""

    def __init__(
        self,
        entries: Mapping[str, SaeEntry] | None = None,
        loaders: Mapping[str, Callable[[], SaeEntry]] | None = None,
    ) -> None:
        self.entries: dict[str, SaeEntry] = dict(entries or {})
        self.loaders: dict[str, Callable[[], SaeEntry]] = dict(loaders or {})
        self._lock = threading.Lock()

    def entry(self, sae_id: str) -> SaeEntry:
        with self._lock:
            if sae_id not in self.entries:
                if sae_id not in self.loaders:
                    raise SteeringError(f"unknown SAE {sae_id!r}; known: {self.ids()}")
                self.entries[sae_id] = self.loaders[sae_id]()
            return self.entries[sae_id]

    def ids(self) -> list[str]:
        return sorted({*self.entries, *self.loaders})


@dataclass
class Prepared:
    """An intervention resolved against its SAE: raw value, vectors on the model's device."""

    spec: Intervention
    site: Site
    sae: SAE
    value: float
    """c (additive), t (clamp) or r (rescale), in raw units."""
    vector: torch.Tensor
    """(d,) unit decoder direction (additive) or the raw decoder row W_dec[f] (clamp / rescale)."""
    max_act: float
    index: torch.Tensor
    """(1,) the feature number on the model's device (no host copy inside the hook)."""


def prepare(
    items: list[Intervention], bank: SaeBank, device: torch.device, dtype: torch.dtype
) -> list[Prepared]:
    """Check every intervention (SAE, feature range, strength guard) and move vectors to `device`."""
    out = []
    for it in items:
        e = bank.entry(it.sae_id)
        if not 0 <= it.feature < e.sae.d_sae:
            raise SteeringError(f"{it.label}: no such feature (SAE has {e.sae.d_sae} features)")
        max_act = float(e.max_act[it.feature])
        value = it.raw_value(max_act)
        row = (
            e.sae.unit_decoder()[it.feature] if it.method == "additive" else e.sae.W_dec[it.feature]
        )
        vec = row.detach().to(device=device, dtype=dtype)  # (d,)
        index = torch.tensor([it.feature], device=device)
        out.append(Prepared(it, e.site, e.sae, value, vec, max_act, index))
    return out


MaskKey = tuple[str, bool]
"""(positions, skip_special): interventions with the same key share one step mask."""


def mask_key(spec: Intervention) -> MaskKey:
    return spec.positions, spec.skip_special


@dataclass
class StepMask:
    """Which (row, position) of the current forward pass may be steered."""

    rows: torch.Tensor
    """(B,) bool: rows that are steered (the default row of a pair is not)."""
    generated: torch.Tensor
    """(B, T) bool: positions holding generated tokens."""
    special: torch.Tensor
    """(B, T) bool: positions holding chat-template special tokens."""

    def for_key(self, key: MaskKey) -> torch.Tensor:
        """(B, T) bool mask for one choice of position options."""
        positions, skip_special = key
        m = self.rows[:, None].expand_as(self.generated)
        if positions == "generated":
            m = m & self.generated
        if skip_special:
            m = m & ~self.special
        return m


def feature_acts(sae: SAE, h: torch.Tensor, features: list[int] | torch.Tensor) -> torch.Tensor:
    """(B, T, d) → (B, T, n) activations of `features`; only TopK needs the full encode."""
    idx = torch.as_tensor(features, device=h.device)
    if sae.cfg.architecture in ("topk", "batchtopk") and sae.threshold is None:
        return sae.encode(h)[..., idx]
    x, _ = sae._norm_in(h.to(sae.W_enc.dtype))
    if sae.cfg.apply_b_dec_to_input:
        x = x - sae.b_dec
    pre = x @ sae.W_enc[:, idx] + sae.b_enc[idx]  # (B, T, n)
    if sae.threshold is not None:
        return torch.relu(pre) * (pre > sae.threshold[idx])
    return torch.relu(pre)


def to_input_units(sae: SAE, h: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """A decoder-space change (B, T, d) in the SAE's normalised units → the site's units."""
    mode = sae.cfg.normalize_activations
    if mode == "constant_norm_rescale":
        return delta * h.norm(dim=-1, keepdim=True) / (sae.cfg.d_in**0.5)
    if mode == "expected_average_only_in" and sae.cfg.norm_scale:
        return delta / sae.cfg.norm_scale
    if mode == "layer_norm":
        return delta * (h.std(-1, keepdim=True) + 1e-5)
    return delta


def site_delta(h: torch.Tensor, items: list[Prepared]) -> list[torch.Tensor]:
    """(B, T, d) activation → one (B, T, d) change per clamp / rescale intervention."""
    acts = [feature_acts(p.sae, h, p.index).to(h.dtype) for p in items]  # (B, T, 1) each
    deltas = []
    for p, a in zip(items, acts, strict=True):
        coef = (p.value - a) if p.spec.method == "clamp" else (p.value - 1.0) * a
        deltas.append(to_input_units(p.sae, h, coef * p.vector))
    return deltas


class Steerer:
    """Holds the prepared interventions and the current step masks; makes one hook per site.

    Additive interventions sharing a site and a mask key are summed once into one vector."""

    def __init__(self, prepared: list[Prepared]) -> None:
        self.by_site: dict[Site, list[Prepared]] = defaultdict(list)
        self.added: dict[Site, dict[MaskKey, torch.Tensor]] = defaultdict(dict)  # (d,) sums
        for p in prepared:
            if p.spec.method == "additive":
                sums = self.added[p.site]
                key = mask_key(p.spec)
                sums[key] = sums[key] + p.value * p.vector if key in sums else p.value * p.vector
            else:
                self.by_site[p.site].append(p)
        self.sites = sorted({*self.by_site, *self.added})
        self.keys = {mask_key(p.spec) for p in prepared}
        self.masks: dict[MaskKey, torch.Tensor] | None = None
        self.rows: torch.Tensor | None = None  # (R,) steered rows; None = all
        self.row_masks: dict[MaskKey, torch.Tensor] | None = None  # (R, T, 1)

    def set_step(self, mask: StepMask | None, dtype: torch.dtype = torch.float32) -> None:
        """Masks for the next forward pass; None steers every row and position."""
        if mask is None:
            self.masks = self.rows = self.row_masks = None
            return
        self.masks = {k: mask.for_key(k).to(dtype).unsqueeze(-1) for k in self.keys}  # (B, T, 1)
        self.rows = mask.rows.nonzero().squeeze(-1)
        self.row_masks = {k: m.index_select(0, self.rows) for k, m in self.masks.items()}

    def _masked(self, delta: torch.Tensor, key: MaskKey) -> torch.Tensor:
        return delta if self.masks is None else self.masks[key] * delta

    def _encoded(self, h: torch.Tensor, items: list[Prepared]) -> torch.Tensor:
        """(B, T, d) → (B, T, d) clamp / rescale change, encoding only the steered rows."""
        rows = self.rows
        sub = h if rows is None else h.index_select(0, rows)  # (R, T, d)
        masks = self.masks if rows is None else self.row_masks
        change = torch.zeros_like(sub)
        for p, delta in zip(items, site_delta(sub, items), strict=True):
            change = change + (delta if masks is None else masks[mask_key(p.spec)] * delta)
        return change if rows is None else torch.zeros_like(h).index_add(0, rows, change)

    def hook(self, site: Site) -> TensorHook:
        added = self.added.get(site, {})
        items = self.by_site.get(site, [])

        def fn(h: torch.Tensor) -> torch.Tensor:  # (B, T, d)
            out = h
            for key, vec in added.items():
                out = out + self._masked(vec, key)
            if items:
                out = out + self._encoded(h, items)
            return out

        return fn


@contextmanager
def steering(model: torch.nn.Module, prepared: list[Prepared]) -> Iterator[Steerer]:
    """Hooks for every site with an intervention, removed on exit even after an error."""
    steerer = Steerer(prepared)
    with hooked([(site_module(model, s), steerer.hook(s)) for s in steerer.sites]):
        yield steerer
