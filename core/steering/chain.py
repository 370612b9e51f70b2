"""A flow chain as a multi-layer steering spec (METHODS §6), and its URL form for the app.

Steering the whole chain puts one feature per layer; the strength is constant or follows
s·e^{α·l}, l = layers after the chain's first layer (α < 0 decays along the chain). The spec
is plain data, [{sae_id, feature, strength}, ...]; the steering engine applies it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from core.model.sites import Site
from core.params import ParamError, allowed, parse_number

Schedule = Literal["constant", "decay"]
SCHEDULES = ("constant", "decay")
ALPHA_RANGE = (-3.0, 3.0)
"""Allowed α of the decay schedule (the Flow page's box and the `alpha` URL parameter)."""
MAX_GROWTH = 30.0
"""Largest α·l allowed: a chain's strength may grow at most e^30 (~1e13) times along it."""


def chain_spec(
    chain: Sequence[tuple[str, int]],
    strength: float,
    schedule: Schedule = "constant",
    alpha: float = 0.0,
) -> list[dict[str, Any]]:
    """[{sae_id, feature, strength}] in layer order for chain features (sae_id, feature)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown strength schedule {schedule!r}; use one of {SCHEDULES}")
    strength = parse_number("strength", strength, -math.inf, math.inf)  # finite
    alpha = parse_number("alpha", alpha, *ALPHA_RANGE)
    if not chain:
        return []
    nodes = sorted(chain, key=lambda n: Site.parse(n[0]).layer)
    first = Site.parse(nodes[0][0]).layer
    span = Site.parse(nodes[-1][0]).layer - first
    if schedule == "decay" and alpha * span > MAX_GROWTH:
        raise ParamError(
            f"alpha must be {allowed(ALPHA_RANGE[0], MAX_GROWTH / span)} for this chain of "
            f"{span + 1} layers (the strength may grow at most e^{MAX_GROWTH:g} along it); "
            f"got {alpha:g}"
        )
    out = []
    for sae_id, feature in nodes:
        l = Site.parse(sae_id).layer - first  # noqa: E741 - METHODS' symbol
        c = strength * math.exp(alpha * l) if schedule == "decay" else strength
        out.append({"sae_id": sae_id, "feature": int(feature), "strength": c})
    return out


def format_chain(chain: Iterable[tuple[str, int]]) -> str:
    """'L12/resid_post:5,L13/resid_post:77' (the `chain` query parameter)."""
    return ",".join(f"{sae_id}:{int(f)}" for sae_id, f in chain)


def parse_chain(text: str) -> list[tuple[str, int]]:
    """Inverse of format_chain; raises ValueError naming the bad item."""
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        sae_id, sep, feat = item.rpartition(":")
        if not sep or not feat.lstrip("-").isdigit():
            raise ValueError(f"bad chain item {item!r}: expected 'L12/resid_post:5'")
        out.append((Site.parse(sae_id).id, int(feat)))
    return out


def steering_params(
    chain: Sequence[tuple[str, int]],
    schedule: Schedule = "constant",
    alpha: float = 0.0,
    strength: float | None = None,
) -> dict[str, str]:
    """Query parameters that open the Steering page pre-filled with the chain."""
    params = {"chain": format_chain(chain), "schedule": schedule}
    if schedule == "decay":
        params["alpha"] = f"{alpha:g}"
    if strength is not None:
        params["strength"] = f"{strength:g}"
    return params
