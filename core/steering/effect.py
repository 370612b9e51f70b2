"""Does steering work? The target feature's measured activation on the text, per strength."""

from __future__ import annotations

import pandas as pd

from core.steering.generate import SamplingConfig
from core.steering.interventions import Intervention, Method
from core.steering.live import LiveModel


def steer_effect(
    live: LiveModel,
    sae_id: str,
    feature: int,
    factors: list[float],
    prompt: str,
    method: Method = "additive",
    cfg: SamplingConfig | None = None,
) -> pd.DataFrame:
    """One row per factor: raw strength, the feature's activation on the default and steered
    continuations (under the unsteered model), perplexities, prompt-end KL and both texts."""
    cfg = cfg or SamplingConfig(max_new_tokens=32)
    max_act = float(live.bank.entry(sae_id).max_act[feature])
    rows = []
    for factor in factors:
        it = Intervention(sae_id, feature, method=method, strength=factor)
        res = live.generate(prompt, [it], cfg)
        m = live.measure(res, [(sae_id, feature)])
        fm = m.features[0]
        rows.append(
            {
                "factor": factor,
                "raw": it.raw_value(max_act),
                "mean_default": fm.mean[0],
                "mean_steered": fm.mean[1],
                "max_default": fm.max[0],
                "max_steered": fm.max[1],
                "frac_default": fm.frac[0],
                "frac_steered": fm.frac[1],
                "ppl_default": m.perplexity[0],
                "ppl_steered": m.perplexity[1],
                "kl_prompt_end": m.kl_prompt_end,
                "text_default": res.texts[0],
                "text_steered": res.texts[1],
            }
        )
    return pd.DataFrame(rows)
