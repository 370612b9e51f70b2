"""What to steer: one feature of one SAE, a method, a strength and where (METHODS §7).

Strength units:
  additive  h ← h + c·d,                 c = strength × max_act (scale 'max_act') or raw c
  clamp     h ← h + (t − a)·W_dec[f],     t = strength × max_act (scale 'max_act') or raw t
  rescale   h ← h + (r − 1)·a·W_dec[f],   r = strength (a plain multiplier; scale is ignored)
d is the unit decoder direction, a the feature's current activation (sae.encode(h)[f]).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

Method = Literal["additive", "clamp", "rescale"]
Positions = Literal["all", "generated"]
Scale = Literal["max_act", "raw"]
METHODS: tuple[Method, ...] = ("additive", "clamp", "rescale")
POSITIONS: tuple[Positions, ...] = ("all", "generated")

MAX_FACTOR = 100.0
"""|strength| above this many max activations (or ×r for rescale) is refused as absurd."""


class SteeringError(ValueError):
    """Bad steering input (unknown feature, non-finite or absurd strength, empty prompt...)."""


@dataclass(frozen=True)
class Intervention:
    sae_id: str
    """The SAE whose feature is steered, e.g. 'L12/resid_post'; steering acts at its site."""
    feature: int
    method: Method = "additive"
    strength: float = 1.0
    """Factor of the feature's max activation (additive / clamp), or r (rescale)."""
    positions: Positions = "all"
    """'all' prompt and generated tokens, or 'generated': only tokens the model produced."""
    skip_special: bool = True
    """Leave chat-template special tokens (<|im_start|> …) unsteered."""
    scale: Scale = "max_act"
    """'max_act': strength × the feature's max activation in the atlas; 'raw': strength as is."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise SteeringError(f"unknown steering method {self.method!r}; known: {METHODS}")
        if self.positions not in POSITIONS:
            raise SteeringError(f"unknown positions {self.positions!r}; known: {POSITIONS}")
        if self.scale not in ("max_act", "raw"):
            raise SteeringError(f"unknown strength scale {self.scale!r}; use 'max_act' or 'raw'")
        if not math.isfinite(self.strength):
            raise SteeringError(
                f"{self.label}: strength must be a finite number, got {self.strength}"
            )
        if isinstance(self.feature, bool) or int(self.feature) != self.feature or self.feature < 0:
            raise SteeringError(f"feature must be a non-negative integer, got {self.feature!r}")

    @property
    def label(self) -> str:
        return f"{self.sae_id}#{self.feature}"

    def raw_value(self, max_act: float) -> float:
        """c (additive), t (clamp) or r (rescale) in the SAE's own units; checks the guard."""
        if self.method == "rescale":
            value = self.strength
            if abs(value) > MAX_FACTOR:
                raise SteeringError(f"{self.label}: rescale ×{value:g} is beyond ±{MAX_FACTOR:g}")
            return value
        if self.scale == "raw":
            value = self.strength
        else:
            if not (math.isfinite(max_act) and max_act > 0):
                raise SteeringError(
                    f"{self.label} never fired in the atlas corpus (max_act={max_act}); "
                    "give the strength in raw units (scale='raw')"
                )
            value = self.strength * max_act
        _guard(self.label, value, max_act)
        return value

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Intervention:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


def _guard(label: str, value: float, max_act: float) -> None:
    """|c| may not exceed MAX_FACTOR × max_act (or MAX_FACTOR × 100 raw units for a dead feature)."""
    ref = max_act if math.isfinite(max_act) and max_act > 0 else 100.0
    if abs(value) > MAX_FACTOR * ref:
        raise SteeringError(
            f"{label}: strength {value:g} is absurd (more than {MAX_FACTOR:g} × max activation "
            f"{ref:g}); stay within ±{MAX_FACTOR * ref:g}"
        )


def from_chain(
    chain: Iterable[Mapping[str, Any]], method: Method = "additive", **common: Any
) -> list[Intervention]:
    """A feature-flow chain [{sae_id, feature, strength}] (chain.py) → one intervention per layer."""
    return [
        Intervention(
            sae_id=str(c["sae_id"]),
            feature=int(c["feature"]),
            method=method,
            strength=float(c.get("strength", 1.0)),
            **common,
        )
        for c in chain
    ]


def format_items(items: Iterable[Intervention]) -> str:
    """URL form of interventions: 'L3/resid_post:12:additive:2,L4/mlp_out:7:clamp:1.5'."""
    return ",".join(f"{i.sae_id}:{i.feature}:{i.method}:{i.strength:g}" for i in items)


def parse_items(text: str, **common: Any) -> list[Intervention]:
    """Inverse of format_items; method and strength may be left out (additive, 1)."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        bits = part.split(":")
        if len(bits) < 2 or not bits[1].isdigit():
            raise SteeringError(
                f"bad steering item {part!r}: expected 'sae_id:feature[:method:strength]'"
            )
        method = bits[2] if len(bits) > 2 else "additive"
        try:
            strength = float(bits[3]) if len(bits) > 3 else 1.0
        except ValueError as err:
            raise SteeringError(f"bad strength in {part!r}") from err
        out.append(Intervention(bits[0], int(bits[1]), method, strength, **common))  # type: ignore[arg-type]
    return out
