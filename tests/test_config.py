"""Configuration has one source of truth: each field's docstring is its --help text, the CLI's
defaults are the dataclasses' defaults, and impossible values fail before any work starts."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from core.cli import add_build_parser, build_config, main
from core.config_help import apply_overrides, field_docs, parse_assignment
from core.explain.cli import add_explain_parser, config_from_args
from core.explain.config import ExplainConfig
from core.flow.config import FlowConfig
from core.pipeline.config import (
    BuildConfig,
    CorpusConfig,
    ModelConfig,
    QualityConfig,
    SaeSpec,
    StatsConfig,
    default_profile,
)
from core.sae.train import TrainConfig

OWN_SECTIONS = (ModelConfig, CorpusConfig, SaeSpec, StatsConfig, QualityConfig, TrainConfig)
DOCUMENTED = (*OWN_SECTIONS, ExplainConfig, FlowConfig)


def _help(*argv: str, capsys: pytest.CaptureFixture[str]) -> str:
    """The --help text on one line (a wide terminal: argparse breaks lines at hyphens)."""
    with pytest.MonkeyPatch.context() as mp, pytest.raises(SystemExit) as exit_:
        mp.setenv("COLUMNS", "10000")
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def _build_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_build_parser(parser.add_subparsers(dest="cmd"))
    return parser.parse_args(["build", *argv])


def _explain_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_explain_parser(parser.add_subparsers(dest="cmd"))
    return parser.parse_args(["explain", *argv])


@pytest.mark.parametrize("cls", DOCUMENTED, ids=lambda c: c.__name__)
def test_every_field_is_documented(cls: type) -> None:
    docs = field_docs(cls)
    missing = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name)]
    assert not missing, f"{cls.__name__}: fields without a docstring: {missing}"


def test_build_help_is_the_field_docstrings(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help("build", capsys=capsys)
    for cls, name in [(TrainConfig, "k"), (TrainConfig, "d_sae"), (CorpusConfig, "n_tokens")]:
        assert field_docs(cls)[name] in text
    assert f"(default: {CorpusConfig().n_tokens})" in text
    assert f"(default: {TrainConfig().k})" in text


def test_explain_help_is_the_field_docstrings(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help("explain", capsys=capsys)
    for f in dataclasses.fields(ExplainConfig):
        flag = ("--no-" if f.type == "bool" and f.default else "--") + f.name.replace("_", "-")
        assert flag in text
        assert field_docs(ExplainConfig)[f.name] in text


def test_cli_defaults_are_the_dataclass_defaults() -> None:
    assert config_from_args(_explain_args()) == ExplainConfig()
    assert build_config(_build_args()) == BuildConfig() == default_profile()


def test_library_and_build_train_with_the_same_learning_rate() -> None:
    assert TrainConfig().lr == BuildConfig().train.lr == 2e-3
    assert "2e-3" in field_docs(TrainConfig)["lr"]


def test_options_reach_the_config(tmp_path: Path) -> None:
    cfg = build_config(
        _build_args(
            "--profile",
            "tiny",
            "--out",
            str(tmp_path / "a.duckdb"),
            "--k",
            "8",
            "--tokens",
            "999",
            "--sae",
            "blocks.3.hook_mlp_out",
            "--set",
            "train.epochs=0.5",
            "--set",
            "geometry.lobe_ks=[2, 4, 8, 16]",
            "--set",
            "keep_dense=true",
        )  # fmt: skip
    )
    assert (cfg.train.k, cfg.train.d_sae, cfg.corpus.n_tokens) == (8, 256, 999)
    assert (cfg.train.epochs, cfg.geometry.lobe_ks, cfg.keep_dense) == (0.5, (2, 4, 8, 16), True)
    assert [s.site for s in cfg.saes] == ["blocks.3.hook_mlp_out"]
    cfg = config_from_args(_explain_args("--explainer", "openai", "--no-llm-scores"))
    assert (cfg.explainer, cfg.llm_scores) == ("openai", False)


@pytest.mark.parametrize(
    "make",
    [
        lambda: TrainConfig(k=0),
        lambda: TrainConfig(k=-1),
        lambda: TrainConfig(d_sae=0),
        lambda: TrainConfig(d_sae=64, k=64),  # k >= d_sae
        lambda: TrainConfig(lr=0.0),
        lambda: TrainConfig(auxk_k=0),
        lambda: CorpusConfig(n_tokens=0),
        lambda: CorpusConfig(n_tokens=-5),
        lambda: ModelConfig(batch_size=0),
        lambda: ModelConfig(dtype="float8"),
        lambda: StatsConfig(n_top=0),
        lambda: QualityConfig(eval_tokens=0),
        lambda: SaeSpec("L3/resid"),
        lambda: SaeSpec("L3/resid_post", k=0),
        lambda: SaeSpec("L3/resid_post", format="onnx"),
        lambda: BuildConfig(saes=[]),
        lambda: BuildConfig(saes=[SaeSpec("L3/resid_post"), SaeSpec("blocks.3.hook_resid_post")]),
        lambda: BuildConfig(saes=[SaeSpec("L3/mlp_out", k=4096)]),  # k >= train.d_sae
        lambda: ExplainConfig(concurrency=0),
        lambda: ExplainConfig(embed_dtype="int8"),
        lambda: FlowConfig(chunk=0),
    ],
)
def test_impossible_values_raise(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


def test_overrides_are_checked() -> None:
    cfg = default_profile()
    with pytest.raises(ValueError, match="0 < k < d_sae"):
        apply_overrides(cfg, {"train.k": 0})
    with pytest.raises(ValueError, match="unknown config section"):
        parse_assignment(BuildConfig, "nope.x=1")
    with pytest.raises(ValueError, match="no field"):
        parse_assignment(BuildConfig, "train.nope=1")
    with pytest.raises(ValueError, match="cannot read"):
        parse_assignment(BuildConfig, "train.k=many")
    assert parse_assignment(BuildConfig, "train.auxk_k=none") == ("train.auxk_k", None)


@pytest.mark.parametrize(
    "argv",
    [
        ["--k", "0"],
        ["--d-sae", "0"],
        ["--tokens", "0"],
        ["--tokens", "-1"],
        ["--k", "2048"],
        ["--d-sae", "16", "--k", "16"],
        ["--sae", "L3/nowhere"],
        ["--sae-format", "saelens"],  # without --sae: it would be ignored
        ["--set", "flow.t_r=2"],
    ],
)
def test_build_rejects_impossible_values_before_any_work(
    tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "atlas.duckdb"
    assert main(["build", "--out", str(out), *argv]) == 2
    assert "sae-atlas build: error:" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no temporary atlas, no side folders
