"""`sae-atlas explain` picks features by density or by a workspace set, and commits by rename."""

from __future__ import annotations

import argparse
from pathlib import Path

import duckdb
import pytest
from explain_planted import F_DEF, F_FRENCH, F_PARIS, SAE

from core.explain.cli import add_explain_parser, cmd_explain
from core.workspace import Workspace


def _run(atlas: Path, *extra: str) -> int:
    parser = argparse.ArgumentParser()
    add_explain_parser(parser.add_subparsers(dest="cmd"))
    return cmd_explain(
        parser.parse_args(["explain", "--atlas", str(atlas), "--device", "cpu", *extra])
    )


def _explained(atlas: Path) -> list[int]:
    con = duckdb.connect(str(atlas), read_only=True)
    try:
        rows = con.execute("SELECT feature FROM explanations ORDER BY feature").fetchall()
    finally:
        con.close()
    return [int(r[0]) for r in rows]


def test_top_n_by_density(planted_atlas: Path) -> None:
    assert _run(planted_atlas, "--features", "top-1") == 0
    assert _explained(planted_atlas) == [F_FRENCH]  # the densest planted feature


def test_feature_set_from_the_workspace(planted_atlas: Path) -> None:
    ws_path = planted_atlas.with_name("ws.duckdb")
    ws = Workspace(ws_path)
    ws.add_features(ws.create_set("cities and code"), [(SAE, F_PARIS), (SAE, F_DEF)])
    ws.close()
    assert _run(planted_atlas, "--set", "cities and code", "--workspace", str(ws_path)) == 0
    assert _explained(planted_atlas) == [F_PARIS, F_DEF]


@pytest.mark.parametrize(
    "args",
    [
        ["--set", "nope", "--workspace", "missing.duckdb"],
        ["--sae", "L9/none"],
        ["--features", "L9/none:1,2"],
    ],
)
def test_bad_selection_is_a_clear_error(
    planted_atlas: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    before = planted_atlas.read_bytes()
    assert _run(planted_atlas, *args) == 2
    assert "sae-atlas explain: error:" in capsys.readouterr().err
    assert planted_atlas.read_bytes() == before  # untouched
    assert not planted_atlas.with_name("atlas.duckdb.tmp").exists()


@pytest.mark.parametrize("args", [["--concurrency", "0"], ["--window", "1"], ["--n-train", "-1"]])
def test_impossible_config_fails_before_the_atlas_is_copied(
    planted_atlas: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    before = planted_atlas.read_bytes()
    files = sorted(planted_atlas.parent.iterdir())
    assert _run(planted_atlas, *args) == 2
    assert "sae-atlas explain: error:" in capsys.readouterr().err
    assert planted_atlas.read_bytes() == before
    assert sorted(planted_atlas.parent.iterdir()) == files  # no atlas.duckdb.tmp copy


def test_bad_top_n_is_a_clear_error(
    planted_atlas: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(planted_atlas, "--features", "top-x") == 2
    assert "expected top-N" in capsys.readouterr().err
