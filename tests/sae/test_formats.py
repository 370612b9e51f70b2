"""Format adapters: each file layout loads into an SAE whose encode/decode equal a reference
written here directly from the raw tensors (float64 numpy), and every bad input is an SAEError
that names the file."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from core.sae.formats import (
    detect_format,
    load_sae,
    resolve_hub,
    save_saelens,
    sparsify_hookpoints,
)
from core.sae.formats.gemmascope import guess_site
from core.sae.model import SAE, SAEConfig, SAEError

D_IN, D_SAE, K = 16, 64, 8
ATOL = 1e-5


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def rand(gen: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=gen) * scale


def np64(t: torch.Tensor) -> np.ndarray:
    return t.double().numpy()


def close(a: torch.Tensor, b: np.ndarray) -> None:
    np.testing.assert_allclose(a.double().numpy(), b, atol=ATOL, rtol=1e-5)


# ---- references (numpy, float64) ---------------------------------------------------------
def ref_topk(pre: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros_like(pre)
    idx = np.argsort(pre, axis=-1)[:, -k:]  # (N, k) largest
    np.put_along_axis(out, idx, np.maximum(np.take_along_axis(pre, idx, -1), 0), -1)
    return out


def ref_jumprelu(pre: np.ndarray, thr: np.ndarray) -> np.ndarray:
    return np.maximum(pre, 0) * (pre > thr)


# ---- writers: each format's real layout and names ----------------------------------------
def sae_tensors(gen: torch.Generator, threshold: bool = False) -> dict[str, torch.Tensor]:
    t = {
        "W_enc": rand(gen, D_IN, D_SAE),
        "W_dec": rand(gen, D_SAE, D_IN, scale=0.3),
        "b_enc": rand(gen, D_SAE, scale=0.5),
        "b_dec": rand(gen, D_IN, scale=0.5),
    }
    if threshold:
        t["threshold"] = rand(gen, D_SAE).abs()
    return t


def write_saelens(folder: Path, cfg: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file(tensors, str(folder / "sae_weights.safetensors"))
    save_file({"sparsity": torch.zeros(D_SAE)}, str(folder / "sparsity.safetensors"))
    return folder


def v6_cfg(architecture: str, **kw: Any) -> dict[str, Any]:
    meta = {"model_name": "gpt2", "hook_name": "blocks.3.hook_resid_post", "context_size": 128}
    cfg = {"architecture": architecture, "d_in": D_IN, "d_sae": D_SAE, "dtype": "float32"}
    return {
        **cfg,
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        **kw,
        "metadata": meta,
    }


def write_sparsify(folder: Path, gen: torch.Generator, **cfg_kw: Any) -> dict[str, torch.Tensor]:
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"activation": "topk", "k": K, "num_latents": D_SAE, "expansion_factor": 32,
           "normalize_decoder": True, "multi_topk": False, "skip_connection": False,
           "transcode": False, "d_in": D_IN, **cfg_kw}  # fmt: skip
    (folder / "cfg.json").write_text(json.dumps(cfg))
    t = {
        "encoder.weight": rand(gen, D_SAE, D_IN),
        "encoder.bias": rand(gen, D_SAE, scale=0.5),
        "W_dec": rand(gen, D_SAE, D_IN, scale=0.3),
        "b_dec": rand(gen, D_IN, scale=0.5),
    }
    save_file(t, str(folder / "sae.safetensors"))
    return t


def write_llamascope(folder: Path, gen: torch.Generator, **hp_kw: Any) -> dict[str, torch.Tensor]:
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    hp = {"d_model": D_IN, "d_sae": D_SAE, "expansion_factor": D_SAE // D_IN,
          "hook_point_in": "blocks.7.hook_resid_post", "hook_point_out": "blocks.7.hook_resid_post",
          "act_fn": "jumprelu", "jump_relu_threshold": 0.4, "norm_activation": "dataset-wise",
          "dataset_average_activation_norm": {"in": 9.5, "out": 9.5}, "top_k": 50,
          "apply_decoder_bias_to_pre_encoder": False, "sparsity_include_decoder_norm": False,
          **hp_kw}  # fmt: skip
    (folder / "hyperparams.json").write_text(json.dumps(hp))
    t = {  # bf16 on disk, as released
        "encoder.weight": rand(gen, D_SAE, D_IN, scale=0.3).bfloat16(),
        "encoder.bias": rand(gen, D_SAE, scale=0.2).bfloat16(),
        "decoder.weight": rand(gen, D_IN, D_SAE, scale=0.3).bfloat16(),
        "decoder.bias": rand(gen, D_IN).bfloat16(),
    }
    save_file(t, str(folder / "checkpoints" / "final.safetensors"))
    return t


# ---- SAELens -----------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["standard", "jumprelu", "topk"])
def test_saelens_v6_encode_decode_match_reference(
    tmp_path: Path, gen: torch.Generator, arch: str
) -> None:
    t = sae_tensors(gen, threshold=arch == "jumprelu")
    cfg = v6_cfg(arch, k=K) if arch == "topk" else v6_cfg(arch)
    sae = load_sae(write_saelens(tmp_path / "sae", cfg, t))
    x = rand(gen, 5, D_IN)
    pre = (np64(x) - np64(t["b_dec"])) @ np64(t["W_enc"]) + np64(t["b_enc"])
    ref = {"standard": np.maximum(pre, 0), "topk": ref_topk(pre, K)}.get(arch)
    ref = ref if ref is not None else ref_jumprelu(pre, np64(t["threshold"]))
    close(sae.encode(x), ref)
    close(sae.decode(sae.encode(x)), ref @ np64(t["W_dec"]) + np64(t["b_dec"]))
    assert (sae.cfg.hook_name, sae.cfg.model_name) == ("L3/resid_post", "gpt2")


def test_saelens_pre_v6_flat_topk_bf16(tmp_path: Path, gen: torch.Generator) -> None:
    t = {k: v.bfloat16() for k, v in sae_tensors(gen).items()}
    cfg = {"d_in": D_IN, "d_sae": D_SAE, "dtype": "bfloat16", "model_name": "pythia-70m",
           "hook_point": "blocks.2.hook_mlp_out", "hook_point_layer": 2,
           "activation_fn_str": "topk", "activation_fn_kwargs": {"k": K},
           "normalize_activations": False}  # fmt: skip
    sae = load_sae(write_saelens(tmp_path / "old", cfg, t))
    assert sae.W_enc.dtype == torch.float32
    assert (sae.cfg.architecture, sae.cfg.k, sae.cfg.hook_name) == ("topk", K, "L2/mlp_out")
    x = rand(gen, 4, D_IN)
    pre = (np64(x) - np64(t["b_dec"])) @ np64(t["W_enc"]) + np64(t["b_enc"])
    close(sae.encode(x), ref_topk(pre, K))


def test_saelens_rescale_acts_by_decoder_norm(tmp_path: Path, gen: torch.Generator) -> None:
    t = sae_tensors(gen)
    sae = load_sae(
        write_saelens(tmp_path / "s", v6_cfg("topk", k=K, rescale_acts_by_decoder_norm=True), t)
    )
    x = rand(gen, 4, D_IN)
    n = np.linalg.norm(np64(t["W_dec"]), axis=-1)  # (d_sae,)
    pre = ((np64(x) - np64(t["b_dec"])) @ np64(t["W_enc"]) + np64(t["b_enc"])) * n
    acts = ref_topk(pre, K)
    close(sae.encode(x), acts)
    close(sae(x), (acts / n) @ np64(t["W_dec"]) + np64(t["b_dec"]))


@pytest.mark.parametrize("norm", ["constant_norm_rescale", "layer_norm"])
def test_saelens_input_normalisation_and_forward(
    tmp_path: Path, gen: torch.Generator, norm: str
) -> None:
    t = sae_tensors(gen)
    sae = load_sae(write_saelens(tmp_path / "n", v6_cfg("standard", normalize_activations=norm), t))
    x = np64(rand(gen, 4, D_IN, scale=3.0)) + 1.0
    if norm == "constant_norm_rescale":
        s = math.sqrt(D_IN) / np.linalg.norm(x, axis=-1, keepdims=True)
        xn, undo = x * s, (lambda y: y / s)
    else:
        mu, sd = x.mean(-1, keepdims=True), x.std(-1, ddof=1, keepdims=True) + 1e-5
        xn, undo = (x - mu) / sd, (lambda y: y * sd + mu)
    acts = np.maximum((xn - np64(t["b_dec"])) @ np64(t["W_enc"]) + np64(t["b_enc"]), 0)
    close(sae.encode(torch.from_numpy(x).float()), acts)
    close(sae(torch.from_numpy(x).float()), undo(acts @ np64(t["W_dec"]) + np64(t["b_dec"])))


@pytest.mark.parametrize("with_threshold", [False, True])
def test_batchtopk_with_and_without_threshold(
    tmp_path: Path, gen: torch.Generator, with_threshold: bool
) -> None:
    t = sae_tensors(gen, threshold=with_threshold)
    sae = load_sae(write_saelens(tmp_path / "b", v6_cfg("batchtopk", k=K), t))
    x = rand(gen, 6, D_IN)
    pre = (np64(x) - np64(t["b_dec"])) @ np64(t["W_enc"]) + np64(t["b_enc"])
    ref = ref_jumprelu(pre, np64(t["threshold"])) if with_threshold else ref_topk(pre, K)
    close(sae.encode(x), ref)
    assert (sae.threshold is not None) == with_threshold


def _trained_sae(gen: torch.Generator, arch: str) -> SAE:
    base = arch.removesuffix("-thr")  # "batchtopk-thr": BatchTopK that carries a threshold
    extra: dict[str, Any] = {"threshold": True} if arch == "batchtopk-thr" else {"notes": [1, 2]}
    cfg = SAEConfig(D_IN, D_SAE, architecture=base, k=K if "topk" in base else None,
                    normalize_activations="expected_average_only_in", norm_scale=1.0 / 3.0,
                    hook_name="L4/resid_post", model_name="smollm2", source="trained", extra=extra)  # fmt: skip
    sae = SAE(cfg)
    return sae.load_tensors(sae_tensors(gen, threshold=sae.threshold is not None), "test")


@pytest.mark.parametrize("arch", ["standard", "topk", "jumprelu", "batchtopk", "batchtopk-thr"])
def test_saelens_save_load_round_trip_is_exact(
    tmp_path: Path, gen: torch.Generator, arch: str
) -> None:
    sae = _trained_sae(gen, arch)
    loaded = load_sae(save_saelens(sae, tmp_path / arch))
    assert loaded.cfg.to_dict() == sae.cfg.to_dict()
    a, b = sae.state_tensors(), loaded.state_tensors()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    cfg = json.loads((tmp_path / arch / "cfg.json").read_text())
    assert cfg["metadata"]["hook_name"] == "L4/resid_post"
    assert cfg["architecture"] == {"batchtopk": "topk", "batchtopk-thr": "jumprelu"}.get(arch, arch)


# ---- sparsify ----------------------------------------------------------------------------
def test_sparsify_encode_decode_match_reference(tmp_path: Path, gen: torch.Generator) -> None:
    t = write_sparsify(tmp_path / "layers.3", gen, num_latents=0, expansion_factor=D_SAE // D_IN)
    sae = load_sae(tmp_path / "layers.3")
    x = rand(gen, 5, D_IN)
    pre = (np64(x) - np64(t["b_dec"])) @ np64(t["encoder.weight"]).T + np64(t["encoder.bias"])
    acts = ref_topk(np.maximum(pre, 0), K)  # sparsify: relu, then top-k
    close(sae.encode(x), acts)
    close(sae.decode(sae.encode(x)), acts @ np64(t["W_dec"]) + np64(t["b_dec"]))
    assert (sae.cfg.d_sae, sae.cfg.hook_name) == (D_SAE, "L3/resid_post")


def test_sparsify_parent_folder_and_hookpoints(tmp_path: Path, gen: torch.Generator) -> None:
    for layer in (10, 2, 9):
        write_sparsify(tmp_path / f"layers.{layer}", gen)
    assert sparsify_hookpoints(tmp_path) == ["layers.2", "layers.9", "layers.10"]
    assert detect_format(tmp_path) == "sparsify"
    assert load_sae(tmp_path, site="L9/resid_post").cfg.hook_name == "L9/resid_post"
    assert load_sae(tmp_path, site="layers.10").cfg.hook_name == "L10/resid_post"
    with pytest.raises(SAEError, match="3 hookpoints"):
        load_sae(tmp_path)
    with pytest.raises(SAEError, match="no hookpoint for site"):
        load_sae(tmp_path, site="L4/resid_post")


def test_sparsify_skip_connection_and_transcoder_refused(
    tmp_path: Path, gen: torch.Generator
) -> None:
    write_sparsify(tmp_path / "skip", gen, skip_connection=True)
    with pytest.raises(SAEError, match="skip connection") as e:
        load_sae(tmp_path / "skip")
    assert str(tmp_path / "skip") in str(e.value)
    write_sparsify(tmp_path / "tc", gen, transcode=True)
    with pytest.raises(SAEError, match="transcoder"):
        load_sae(tmp_path / "tc")


# ---- Gemma Scope -------------------------------------------------------------------------
@pytest.mark.parametrize("lowercase", [False, True])
def test_gemmascope_encode_decode_match_reference(
    tmp_path: Path, gen: torch.Generator, lowercase: bool
) -> None:
    t = sae_tensors(gen, threshold=True)
    folder = tmp_path / "gemma-scope-2b-pt-res" / "layer_5" / "width_16k" / "average_l0_10"
    folder.mkdir(parents=True)
    names = {"W_enc": "w_enc", "W_dec": "w_dec"} if lowercase else {}
    arrays = {names.get(k, k): v.numpy() for k, v in t.items()}
    np.savez(folder / "params.npz", **arrays)  # type: ignore[arg-type]
    sae = load_sae(folder)
    x = rand(gen, 5, D_IN)
    pre = np64(x) @ np64(t["W_enc"]) + np64(t["b_enc"])  # no b_dec subtraction
    acts = ref_jumprelu(pre, np64(t["threshold"]))
    close(sae.encode(x), acts)
    close(sae.decode(sae.encode(x)), acts @ np64(t["W_dec"]) + np64(t["b_dec"]))
    assert (sae.cfg.apply_b_dec_to_input, sae.cfg.hook_name) == (False, "L5/resid_post")
    assert load_sae(folder / "params.npz").cfg.d_sae == D_SAE
    assert guess_site(tmp_path / "gemma-scope-2b-pt-att" / "layer_5" / "params.npz") == ""


# ---- Llama Scope -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("decoder_norm", "shift_input", "norm_out"),
    [(False, False, 9.5), (True, False, 11.0), (True, True, 8.0)],
)
def test_llamascope_encode_decode_match_reference(
    tmp_path: Path, gen: torch.Generator, decoder_norm: bool, shift_input: bool, norm_out: float
) -> None:
    norm_in = 9.5
    t = write_llamascope(tmp_path / "L7R", gen, sparsity_include_decoder_norm=decoder_norm,
                         apply_decoder_bias_to_pre_encoder=shift_input,
                         dataset_average_activation_norm={"in": norm_in, "out": norm_out})  # fmt: skip
    sae = load_sae(tmp_path / "L7R")
    assert sae.W_enc.dtype == torch.float32 and sae.cfg.hook_name == "L7/resid_post"
    enc, b, dec, db = (
        np64(t[k]) for k in ("encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias")
    )
    x = np64(rand(gen, 6, D_IN, scale=3.0))
    xn = x * math.sqrt(D_IN) / norm_in - (db if shift_input else 0.0)
    pre = xn @ enc.T + b
    score = pre * np.linalg.norm(dec, axis=0) if decoder_norm else pre  # (N, d_sae)
    acts = pre * (score > 0.4)
    assert 0 < (acts > 0).sum() < acts.size
    x_hat = (acts @ dec.T + db) * norm_out / math.sqrt(D_IN)
    close(sae.encode(torch.from_numpy(x).float()), acts)
    close(sae.decode(torch.from_numpy(acts).float()), x_hat)
    close(sae(torch.from_numpy(x).float()), x_hat)


def test_llamascope_topk_and_transcoder(tmp_path: Path, gen: torch.Generator) -> None:
    t = write_llamascope(tmp_path / "tk", gen, act_fn="topk", top_k=K, norm_activation="inference")
    sae = load_sae(tmp_path / "tk" / "checkpoints" / "final.safetensors")
    x = rand(gen, 3, D_IN)
    pre = np64(x) @ np64(t["encoder.weight"]).T + np64(t["encoder.bias"])
    close(sae.encode(x), ref_topk(pre, K))
    write_llamascope(tmp_path / "tc", gen, hook_point_in="blocks.8.ln2.hook_normalized",
                     hook_point_out="blocks.8.hook_mlp_out")  # fmt: skip
    with pytest.raises(SAEError, match="transcoder"):
        load_sae(tmp_path / "tc")


# ---- detection and errors ----------------------------------------------------------------
def test_detect_format(tmp_path: Path, gen: torch.Generator) -> None:
    write_saelens(tmp_path / "a", v6_cfg("standard"), sae_tensors(gen))
    write_sparsify(tmp_path / "b", gen)
    write_llamascope(tmp_path / "c", gen)
    (tmp_path / "d").mkdir()
    np.savez(tmp_path / "d" / "params.npz", W_enc=np.zeros((2, 2)))
    assert [detect_format(tmp_path / n) for n in "abcd"] == [
        "saelens",
        "sparsify",
        "llamascope",
        "gemmascope",
    ]
    assert detect_format(tmp_path / "a" / "cfg.json") == "saelens"
    assert detect_format(tmp_path / "c" / "checkpoints" / "final.safetensors") == "llamascope"
    (tmp_path / "empty").mkdir()
    with pytest.raises(SAEError, match="cannot tell the SAE format"):
        detect_format(tmp_path / "empty")
    with pytest.raises(SAEError, match="unknown SAE format"):
        load_sae(tmp_path / "a", fmt="pickle")
    assert load_sae(tmp_path / "a", fmt="SAE_Lens").cfg.d_in == D_IN


def test_wrong_width_names_file_widths_and_site(tmp_path: Path, gen: torch.Generator) -> None:
    folder = write_saelens(tmp_path / "sae", v6_cfg("standard"), sae_tensors(gen))
    with pytest.raises(SAEError) as e:
        load_sae(folder, expected_d_in=576, site="L3/resid_post")
    msg = str(e.value)
    assert str(folder) in msg and "d_in=16" in msg and "576" in msg and "L3/resid_post" in msg
    assert load_sae(folder, expected_d_in=D_IN).cfg.d_in == D_IN


def test_missing_tensor_and_wrong_shape(tmp_path: Path, gen: torch.Generator) -> None:
    t = sae_tensors(gen)
    del t["b_enc"]
    with pytest.raises(SAEError, match="missing tensor 'b_enc'") as e:
        load_sae(write_saelens(tmp_path / "a", v6_cfg("standard"), t))
    assert "sae_weights.safetensors" in str(e.value)
    t = sae_tensors(gen, threshold=True)
    del t["threshold"]
    with pytest.raises(SAEError, match="threshold"):
        load_sae(write_saelens(tmp_path / "j", v6_cfg("jumprelu"), t))
    t = {**sae_tensors(gen), "W_dec": torch.zeros(D_SAE, D_IN + 1)}
    with pytest.raises(SAEError, match="W_dec has shape"):
        load_sae(write_saelens(tmp_path / "b", v6_cfg("standard"), t))
    write_sparsify(tmp_path / "s", gen)
    save_file({"encoder.weight": torch.zeros(D_SAE, D_IN)}, str(tmp_path / "s" / "sae.safetensors"))
    with pytest.raises(SAEError, match="missing tensor 'encoder.bias'"):
        load_sae(tmp_path / "s")


def test_corrupt_safetensors_and_npz(tmp_path: Path, gen: torch.Generator) -> None:
    folder = write_saelens(tmp_path / "a", v6_cfg("standard"), sae_tensors(gen))
    weights = folder / "sae_weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:300])
    with pytest.raises(SAEError, match="corrupt or truncated safetensors") as e:
        load_sae(folder)
    assert str(weights) in str(e.value)
    npz = tmp_path / "g" / "params.npz"
    npz.parent.mkdir()
    np.savez(npz, **{k: v.numpy() for k, v in sae_tensors(gen, threshold=True).items()})  # type: ignore[arg-type]
    npz.write_bytes(npz.read_bytes()[:1000])
    with pytest.raises(SAEError, match="corrupt or truncated .npz") as e:
        load_sae(npz.parent)
    assert str(npz) in str(e.value)


def test_missing_config_unknown_architecture_and_nan(tmp_path: Path, gen: torch.Generator) -> None:
    folder = write_saelens(tmp_path / "a", v6_cfg("standard"), sae_tensors(gen))
    (folder / "cfg.json").unlink()
    with pytest.raises(SAEError, match="missing config file") as e:
        load_sae(folder)
    assert str(folder / "cfg.json") in str(e.value)
    for arch in ("gated", "crosscoder"):
        with pytest.raises(SAEError, match=f"unsupported SAE architecture '{arch}'") as e:
            load_sae(write_saelens(tmp_path / arch, v6_cfg(arch), sae_tensors(gen)))
        assert "cfg.json" in str(e.value)
    t = sae_tensors(gen)
    t["W_enc"][0, 0] = float("nan")
    with pytest.raises(SAEError, match="NaN"):
        load_sae(write_saelens(tmp_path / "nan", v6_cfg("standard"), t))
    with pytest.raises(SAEError, match="no such file"):
        load_sae(tmp_path / "nowhere", site="L1/resid_post")


def test_hub_specs_without_network(
    tmp_path: Path, gen: torch.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    write_saelens(tmp_path / "snap" / "blocks.3", v6_cfg("standard"), sae_tensors(gen))
    calls: list[tuple[str, Any]] = []

    def fake_download(repo_id: str, revision: str | None = None, allow_patterns: Any = None) -> str:
        calls.append((repo_id, allow_patterns))
        return str(tmp_path / "snap")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    sae = load_sae("hf:owner/repo/blocks.3", expected_d_in=D_IN)
    assert calls == [("owner/repo", ["blocks.3/*"])] and sae.cfg.source == "hf:owner/repo/blocks.3"

    def offline(*args: Any, **kwargs: Any) -> str:
        raise OSError("network unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(SAEError, match="Offline"):
        resolve_hub("hf:owner/repo/blocks.3")
    with pytest.raises(SAEError, match="expected hf:"):
        resolve_hub("hf:justowner")
