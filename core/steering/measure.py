"""Measuring a steer (METHODS §7; SAE-TS, AxBench), always under the unsteered model.

- concept: the target features' activations on the generated tokens of each text;
- fluency proxy: perplexity of each continuation given the prompt;
- side effect: KL(default ‖ steered) of next-token distributions at the prompt end.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import torch

from core.model.hooks import TensorHook, hooked
from core.model.sites import Site, site_module
from core.sae.model import SAE
from core.steering.engine import SaeBank, feature_acts
from core.steering.generate import PairResult


@dataclass
class FeatureMeasure:
    sae_id: str
    feature: int
    mean: tuple[float, float]
    """Mean activation over generated tokens (default, steered)."""
    max: tuple[float, float]
    frac: tuple[float, float]
    """Share of generated tokens where the feature fires (> 0)."""


@dataclass
class SteerMeasures:
    kl_prompt_end: float
    """KL(default ‖ steered) in nats, next-token distributions at the last prompt position."""
    perplexity: tuple[float, float]
    """Of the default and the steered continuation under the unsteered model."""
    features: list[FeatureMeasure]

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers (for saving and JSON)."""
        return asdict(self)

    def frame(self) -> pd.DataFrame:
        rows = []
        for m in self.features:
            d = asdict(m)
            for key in ("mean", "max", "frac"):
                d[f"{key}_default"], d[f"{key}_steered"] = d.pop(key)
            rows.append(d)
        return pd.DataFrame(rows)


def kl_divergence(logits_p: torch.Tensor, logits_q: torch.Tensor) -> float:
    """KL(p ‖ q) in nats for two (V,) logit vectors."""
    lp = torch.log_softmax(logits_p.double(), -1)
    lq = torch.log_softmax(logits_q.double(), -1)
    return float((lp.exp() * (lp - lq)).sum().clamp_min(0.0))


@dataclass
class TextStats:
    nll: float
    """Mean negative log-likelihood per generated token (nats); NaN when nothing was generated."""
    acts: dict[Site, torch.Tensor]
    """site → (G, d) activations at the generated positions."""


@torch.no_grad()
def text_stats(
    model: torch.nn.Module, prompt: list[int], gen: list[int], sites: list[Site]
) -> TextStats:
    """One unsteered forward over prompt + continuation, capturing `sites`."""
    if not gen:
        return TextStats(float("nan"), {})
    device = next(model.parameters()).device
    store: dict[Site, torch.Tensor] = {}

    def keep(site: Site) -> TensorHook:
        def fn(out: torch.Tensor) -> None:
            store[site] = out[0, len(prompt) :].detach()  # (G, d)

        return fn

    ids = torch.tensor([prompt + gen], device=device)  # (1, P + G)
    with hooked([(site_module(model, s), keep(s)) for s in sites]):
        logits = model(input_ids=ids, use_cache=False, logits_to_keep=len(gen) + 1).logits
    logp = torch.log_softmax(logits[0, :-1].float(), -1)  # (G, V): predictions of gen tokens
    target = torch.tensor(gen, device=device)
    nll = -logp.gather(-1, target[:, None]).mean()
    return TextStats(float(nll), store)


@torch.no_grad()
def measure_pair(
    model: torch.nn.Module, bank: SaeBank, result: PairResult, targets: list[tuple[str, int]]
) -> SteerMeasures:
    """Measure both continuations of `result` for the (sae_id, feature) targets."""
    entries = {sid: bank.entry(sid) for sid, _ in targets}
    sites = sorted({e.site for e in entries.values()})
    stats = [text_stats(model, result.prompt_ids, g, sites) for g in result.ids]
    feats = []
    for sid, f in dict.fromkeys(targets):
        e = entries[sid]
        (m0, x0, f0), (m1, x1, f1) = (_feature_summary(e.sae, s.acts.get(e.site), f) for s in stats)
        feats.append(FeatureMeasure(sid, f, (m0, m1), (x0, x1), (f0, f1)))
    ppl = tuple(math.exp(s.nll) if math.isfinite(s.nll) else float("nan") for s in stats)
    kl = kl_divergence(result.first_logits[0], result.first_logits[1])
    return SteerMeasures(kl, (ppl[0], ppl[1]), feats)


def _feature_summary(sae: SAE, h: torch.Tensor | None, f: int) -> tuple[float, float, float]:
    """(G, d) activations → (mean, max, firing share) of feature f; NaN without tokens."""
    if h is None or h.shape[0] == 0:
        nan = float("nan")
        return nan, nan, nan
    a = feature_acts(sae, h, [f])[:, 0].float()  # (G,)
    return float(a.mean()), float(a.max()), float((a > 0).float().mean())
