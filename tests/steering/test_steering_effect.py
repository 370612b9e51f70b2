"""Strong steering moves the measured activation of its feature; a real atlas loads and steers.

The concept feature is built from the model itself (no atlas needed): a difference-of-means
"French" direction at L12, with a detector encoder (ReLU above the French/English midpoint).
On the default atlas the lead runs the same `steer_effect` on a real French / code feature.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
import torch

from core.model.capture import capture
from core.model.loading import LoadedModel
from core.model.sites import Site
from core.sae.model import SAE, SAEConfig
from core.steering.effect import steer_effect
from core.steering.engine import SaeBank, SaeEntry
from core.steering.generate import SamplingConfig
from core.steering.interventions import Intervention
from core.steering.live import LiveModel
from core.store import flow_sql
from core.store.atlas import Atlas

FR = (
    "Le chat dort sur le canapé. Nous allons au marché demain matin avec mes amis. "
    "Il fait très beau aujourd'hui et les enfants jouent dans le jardin."
)
EN = (
    "The cat sleeps on the sofa. We are going to the market tomorrow morning with my friends. "
    "The weather is very nice today and the children play in the garden."
)
SITE = Site.parse("L12/resid_post")


def french_feature(lm: LoadedModel) -> SaeEntry:
    def acts(text: str) -> torch.Tensor:
        ids = torch.tensor([lm.tokenizer(text)["input_ids"]], device=lm.device)
        return capture(lm.model, ids, None, [SITE])[SITE][0, 1:]  # (T-1, d), no first token

    fr, en = acts(FR), acts(EN)
    w = fr.mean(0) - en.mean(0)
    w = w / w.norm()  # (d,)
    mid = 0.5 * float((fr @ w).mean() + (en @ w).mean())
    cfg = SAEConfig(d_in=w.numel(), d_sae=1, architecture="standard", hook_name=SITE.id)
    cfg.apply_b_dec_to_input = False
    sae = SAE(cfg).to(lm.device).requires_grad_(False)
    sae.W_enc[:, 0], sae.b_enc[0], sae.W_dec[0] = w, -mid, w
    max_act = torch.relu(fr @ w - mid).max().reshape(1).cpu()
    return SaeEntry(SITE.id, SITE, sae, max_act)


def test_strong_steering_raises_the_feature_on_the_text(lm: LoadedModel) -> None:
    live = LiveModel(lm, SaeBank({SITE.id: french_feature(lm)}))
    cfg = SamplingConfig(max_new_tokens=12)
    df = steer_effect(live, SITE.id, 0, [0.0, 1.0], "Tell me about your day.", cfg=cfg)
    zero, one = df.iloc[0], df.iloc[1]
    assert zero.mean_steered == pytest.approx(zero.mean_default)
    assert one.mean_steered > one.mean_default + 0.1 * float(live.bank.entry(SITE.id).max_act[0])
    assert one.raw == pytest.approx(float(live.bank.entry(SITE.id).max_act[0]))
    assert one.kl_prompt_end > zero.kl_prompt_end == 0.0


@pytest.mark.slow
def test_live_model_from_a_real_atlas(steer_atlas: Path) -> None:
    live = LiveModel.from_atlas(steer_atlas)
    with duckdb.connect(str(steer_atlas), read_only=True) as con:
        saes = [r[0] for r in con.execute("SELECT sae_id FROM saes").fetchall()]
        row = con.execute(
            "SELECT sae_id, feature, max_act FROM features WHERE n_fire > 0 LIMIT 1"
        ).fetchone()
    assert row is not None
    sid, f, max_act = row
    assert live.bank.ids() == sorted(saes)
    assert float(live.bank.entry(sid).max_act[f]) == pytest.approx(max_act)
    cfg = SamplingConfig(max_new_tokens=4)
    res = live.generate("Hello!", [Intervention(sid, f, strength=0.0)], cfg)
    assert res.ids[0] == res.ids[1]
    found = live.search("Hello world, this is a test.", [sid])
    assert not found.summary.empty


def french_atlas_feature(cur: duckdb.DuckDBPyConnection) -> tuple[str, int, float]:
    """The first residual SAE's most frequent feature that fires mostly on French Wikipedia
    (a general French feature such as ' la / le', rather than a rare token)."""
    sae_id = flow_sql.first_residual_sae(cur)
    assert sae_id is not None
    pick = flow_sql.source_features(cur, sae_id, "wiki_fr", k=50, min_fire=10)
    pick = pick[pick["share"] >= 0.5]
    assert not pick.empty, "no French-specific feature in the atlas"
    best = pick.sort_values(["n_fire", "feature"], ascending=[False, True]).iloc[0]
    return sae_id, int(best["feature"]), float(best["share"])


@pytest.mark.slow
def test_steering_a_french_feature_from_the_atlas_raises_it(steer_atlas: Path) -> None:
    """A French feature taken from the atlas, steered at moderate strengths: its activation
    measured on the steered text (under the unsteered model) rises above the default text's."""
    at = Atlas(steer_atlas)
    sae_id, feature, share = french_atlas_feature(at.cursor())
    live = LiveModel.from_atlas(at)
    cfg = SamplingConfig(max_new_tokens=16, temperature=0.0)
    df = steer_effect(live, sae_id, feature, [0.0, 2.0, 4.0], "The weather today is", cfg=cfg)
    print(sae_id, feature, share)
    print(df[["factor", "mean_default", "mean_steered", "ppl_steered", "text_steered"]])
    zero, mid, high = df.iloc[0], df.iloc[1], df.iloc[2]
    assert zero.mean_steered == pytest.approx(zero.mean_default)
    assert mid.mean_steered > mid.mean_default
    assert high.mean_steered > high.mean_default
