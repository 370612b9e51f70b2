"""One table of site names: the build's parser (Site.parse) and the weight loaders
(site_from_hook, through a real SAELens file) accept and reject the same names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from core.model.sites import Site, SiteError, site_from_hook
from core.sae.formats import load_sae

ACCEPTED = {
    "L3/resid_post": "L3/resid_post",
    " L3/mlp_out ": "L3/mlp_out",
    "blocks.3.hook_resid_post": "L3/resid_post",
    "blocks.3.hook_mlp_out": "L3/mlp_out",
    "blocks.3.hook_attn_out": "L3/attn_out",
    "blocks.4.hook_resid_pre": "L3/resid_post",  # the input of block 4 is block 3's output
    "layers.3": "L3/resid_post",
    "model.layers.3": "L3/resid_post",
    "model.layers.3.mlp": "L3/mlp_out",
    "model.layers.3.self_attn": "L3/attn_out",
    "transformer.h.3": "L3/resid_post",
    "transformer.h.3.attn": "L3/attn_out",
    "gpt_neox.layers.3.attention": "L3/attn_out",
}
REJECTED = [
    "L3/resid",
    "L3",
    "blocks.0.hook_resid_pre",  # the embeddings: no decoder block's output
    "blocks.3.hook_resid_mid",
    "blocks.3.ln2.hook_normalized",
    "model.layers.3.input_layernorm",
    "",
]


@pytest.mark.parametrize(("name", "site"), ACCEPTED.items())
def test_accepted_names_agree(name: str, site: str) -> None:
    assert Site.parse(name).id == site
    assert site_from_hook(name) == site


@pytest.mark.parametrize("name", REJECTED)
def test_rejected_names_agree(name: str) -> None:
    with pytest.raises(SiteError, match="unknown SAE site"):
        Site.parse(name)
    assert site_from_hook(name) == name  # unknown hooks reach the user verbatim


def _saelens_with_hook(folder: Path, hook: str) -> Path:
    d_in, d_sae = 4, 8
    folder.mkdir(parents=True)
    cfg = {"architecture": "standard", "d_in": d_in, "d_sae": d_sae, "dtype": "float32",
           "metadata": {"model_name": "m", "hook_name": hook}}  # fmt: skip
    (folder / "cfg.json").write_text(json.dumps(cfg))
    tensors = {"W_enc": torch.zeros(d_in, d_sae), "W_dec": torch.zeros(d_sae, d_in),
               "b_enc": torch.zeros(d_sae), "b_dec": torch.zeros(d_in)}  # fmt: skip
    save_file(tensors, str(folder / "sae_weights.safetensors"))
    return folder


@pytest.mark.parametrize("name", ["blocks.3.hook_attn_out", "blocks.4.hook_resid_pre", "L3/resid"])
def test_a_weight_files_hook_reads_as_the_build_parses_it(tmp_path: Path, name: str) -> None:
    sae = load_sae(_saelens_with_hook(tmp_path / "sae", name), "saelens")
    expected = ACCEPTED.get(name, name)
    assert sae.cfg.hook_name == expected
    if name in ACCEPTED:
        assert Site.parse(sae.cfg.hook_name) == Site.parse(name)
