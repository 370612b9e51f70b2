"""The model adapter on the real default model: sites, capture, early stop, hooks removed."""

from __future__ import annotations

import pytest
import torch

from core.model.capture import capture
from core.model.hooks import hooked
from core.model.loading import LoadedModel, load_model
from core.model.sites import Site, SiteError, decoder_layers, site_module


@pytest.fixture(scope="module")
def lm() -> LoadedModel:
    return load_model("default", device="cpu")


def _ids(lm: LoadedModel) -> torch.Tensor:
    return lm.tokenizer(
        ["The Eiffel Tower is in Paris.", "def f(x):\n    return x"],
        return_tensors="pt",
        padding=True,
    )["input_ids"]


def test_default_model_shape(lm: LoadedModel) -> None:
    assert len(decoder_layers(lm.model)) == 30
    assert lm.model.config.hidden_size == 576
    assert lm.model.config.vocab_size == 49152


def test_resid_post_is_hidden_state_of_next_layer(lm: LoadedModel) -> None:
    ids = _ids(lm)
    hs = lm.model(input_ids=ids, output_hidden_states=True).hidden_states
    got = capture(lm.model, ids, None, [Site(3, "resid_post"), Site(7, "resid_post")])
    torch.testing.assert_close(got[Site(3, "resid_post")], hs[4])
    torch.testing.assert_close(got[Site(7, "resid_post")], hs[8])


def test_mlp_and_attn_sum_to_the_residual_update(lm: LoadedModel) -> None:
    ids = _ids(lm)
    s = [Site(4, "resid_post"), Site(5, "attn_out"), Site(5, "mlp_out"), Site(5, "resid_post")]
    got = capture(lm.model, ids, None, s)
    update = got[s[3]] - got[s[0]]
    torch.testing.assert_close(update, got[s[1]] + got[s[2]], atol=1e-4, rtol=1e-4)


def test_forward_stops_after_deepest_site(lm: LoadedModel) -> None:
    seen: list[int] = []
    layers = decoder_layers(lm.model)
    probes = [(layers[i], lambda _o, i=i: seen.append(i)) for i in (2, 3, 10)]
    with hooked(probes):
        capture(lm.model, _ids(lm), None, [Site(3, "resid_post")])
    assert seen == [2, 3]  # layer 10 never ran


def test_hooks_removed_after_error(lm: LoadedModel) -> None:
    module = site_module(lm.model, Site(2, "resid_post"))

    def boom(_out: torch.Tensor) -> None:
        raise RuntimeError("inside a hook")

    before = dict(module._forward_hooks)  # transformers keeps hooks of its own here
    with pytest.raises(RuntimeError), hooked([(module, boom)]):
        lm.model(input_ids=_ids(lm))
    assert dict(module._forward_hooks) == before


def test_unknown_sites_are_clear(lm: LoadedModel) -> None:
    with pytest.raises(SiteError, match="out of range"):
        site_module(lm.model, Site(40, "resid_post"))
    with pytest.raises(SiteError, match="unknown SAE site"):
        Site.parse("L3/resid")
    assert Site.parse("blocks.4.hook_mlp_out") == Site(4, "mlp_out")
