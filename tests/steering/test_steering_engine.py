"""The steering engine on the real model: exact deltas at the site, clamp, rescale, guards."""

from __future__ import annotations

import pytest
import torch

from core.model.capture import capture
from core.model.loading import LoadedModel
from core.model.sites import Site
from core.steering.engine import SaeBank, StepMask, prepare, steering
from core.steering.interventions import Intervention, SteeringError

PROMPT = "The cat sat on the mat because"


def ids(lm: LoadedModel) -> torch.Tensor:
    return torch.tensor([lm.tokenizer(PROMPT)["input_ids"]], device=lm.device)  # (1, T)


def run(lm: LoadedModel, bank: SaeBank, items: list[Intervention], sites: list[Site]):
    """Activations at `sites` with the interventions applied (capture hooks run after them)."""
    prep = prepare(items, bank, lm.device, torch.float32)
    with steering(lm.model, prep):
        return capture(lm.model, ids(lm), None, sites)


def test_additive_adds_exactly_c_d(lm: LoadedModel, bank: SaeBank) -> None:
    site = Site.parse("L2/resid_post")
    base = capture(lm.model, ids(lm), None, [site])[site]
    it = Intervention("L2/resid_post", 5, strength=1.5)
    got = run(lm, bank, [it], [site])[site]
    e = bank.entry("L2/resid_post")
    c = 1.5 * float(e.max_act[5])
    d = e.sae.unit_decoder()[5]
    torch.testing.assert_close(got - base, (c * d).expand_as(base), atol=1e-4, rtol=0)


def test_two_layers_each_get_their_delta(lm: LoadedModel, bank: SaeBank) -> None:
    s5 = Site.parse("L5/resid_post")
    a = Intervention("L2/resid_post", 1, strength=2.0)
    b = Intervention("L5/resid_post", 3, strength=-1.0)
    only_a = run(lm, bank, [a], [s5])[s5]
    both = run(lm, bank, [a, b], [s5])[s5]
    d = bank.entry("L5/resid_post").sae.unit_decoder()[3]
    torch.testing.assert_close(both - only_a, (-4.0 * d).expand_as(both), atol=1e-4, rtol=0)


def test_clamp_sets_activation_when_reencoded(lm: LoadedModel, bank: SaeBank) -> None:
    """Tied orthonormal ReLU SAE: where the feature was active, re-encoding gives the target."""
    site = Site.parse("L3/resid_post")
    e = bank.entry("L3/resid_post")
    codes = e.sae.encode(capture(lm.model, ids(lm), None, [site])[site])[0]  # (T, d_sae)
    f = int((codes > 0).sum(0).argmax())  # the feature active on most tokens
    before, target = codes[:, f], 0.75  # t = 0.75 × max_act 4.0 = 3.0
    after = e.sae.encode(run(lm, bank, [Intervention(site.id, f, "clamp", target)], [site])[site])
    active = before > 0
    assert active.any()
    torch.testing.assert_close(after[0, active, f], torch.full_like(after[0, active, f], 3.0))


def test_clamp_keeps_reconstruction_error(lm: LoadedModel, bank: SaeBank) -> None:
    """TopK SAE: h' = decode(code with a_f = t) + (h - decode(code))."""
    site = Site.parse("L5/resid_post")
    sae = bank.entry(site.id).sae
    h = capture(lm.model, ids(lm), None, [site])[site]
    code = sae.encode(h)
    clamped = code.clone()
    clamped[..., 2] = 8.0  # 2.0 × max_act 4.0
    want = sae.decode(clamped) + (h - sae.decode(code))
    got = run(lm, bank, [Intervention(site.id, 2, "clamp", 2.0)], [site])[site]
    torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-4)


def test_rescale_zero_deactivates(lm: LoadedModel, bank: SaeBank) -> None:
    site = Site.parse("L3/resid_post")
    sae = bank.entry(site.id).sae
    got = run(lm, bank, [Intervention(site.id, 4, "rescale", 0.0)], [site])[site]
    assert sae.encode(got)[..., 4].abs().max() < 1e-4


@pytest.mark.parametrize(
    ("sae_id", "method"), [("L2/resid_post", "additive"), ("L5/resid_post", "clamp")]
)
def test_step_mask_limits_rows_and_positions(
    lm: LoadedModel, bank: SaeBank, sae_id: str, method: str
) -> None:
    site = Site.parse(sae_id)
    x = ids(lm).repeat(2, 1)  # (2, T)
    base = capture(lm.model, x, None, [site])[site]
    it = Intervention(site.id, 0, method, positions="generated")  # type: ignore[arg-type]
    prep = prepare([it], bank, lm.device, torch.float32)
    gen = torch.zeros_like(x, dtype=torch.bool)
    gen[:, -2:] = True  # pretend the last two tokens were generated
    special = torch.zeros_like(gen)
    special[:, -1] = True
    with steering(lm.model, prep) as st:
        st.set_step(StepMask(torch.tensor([False, True]), gen, special))
        got = capture(lm.model, x, None, [site])[site]
    moved = (got - base).norm(dim=-1) > 1e-3  # (2, T)
    expect = torch.zeros_like(moved)
    expect[1, -2] = True  # steered row, generated, not special
    assert torch.equal(moved, expect)
    assert torch.equal(got[0], base[0])  # the default row is bit-for-bit untouched


def test_hooks_removed_after_error(lm: LoadedModel, bank: SaeBank) -> None:
    prep = prepare([Intervention("L2/resid_post", 0)], bank, lm.device, torch.float32)
    with pytest.raises(RuntimeError, match="boom"), steering(lm.model, prep):
        raise RuntimeError("boom")
    assert not any(m._forward_hooks for m in lm.model.modules())


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (dict(sae_id="L9/resid_post", feature=0), "unknown SAE"),
        (dict(sae_id="L2/resid_post", feature=64), "no such feature"),
        (dict(sae_id="L2/resid_post", feature=0, strength=101.0), "absurd"),
        (dict(sae_id="L2/resid_post", feature=0, method="rescale", strength=-1e4), "beyond"),
        (dict(sae_id="L2/resid_post", feature=0, strength=float("nan")), "finite"),
        (dict(sae_id="L2/resid_post", feature=-1), "non-negative"),
        (dict(sae_id="L2/resid_post", feature=0, method="shift"), "unknown steering method"),
    ],
)
def test_bad_interventions(lm: LoadedModel, bank: SaeBank, item: dict, message: str) -> None:
    with pytest.raises(SteeringError, match=message):
        prepare([Intervention(**item)], bank, lm.device, torch.float32)
