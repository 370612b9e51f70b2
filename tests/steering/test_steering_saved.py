"""Saved steers round-trip through the workspace DuckDB; settings survive as URL pieces."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.steering.generate import SamplingConfig
from core.steering.interventions import (
    Intervention,
    SteeringError,
    format_items,
    parse_items,
)
from core.steering.saved import SavedSteer, delete_steer, list_steers, load_steer, save_steer
from core.workspace import Workspace, WorkspaceError


def test_save_load_delete(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws.duckdb")
    items = [Intervention("L3/resid_post", 7, "clamp", 2.5, positions="generated")]
    steer = SavedSteer(
        "  french   steer ",
        "Say hi",
        SamplingConfig(max_new_tokens=9, seed=4),
        items,
        ("hi", "salut"),
        {"kl_prompt_end": 0.5, "perplexity": [3.0, 4.0]},
        url="?sae=L3/resid_post&feature=7",
    )
    sid = save_steer(ws, steer)
    got = load_steer(ws, sid)
    assert got.name == "french steer" and got.interventions == items
    assert got.sampling == steer.sampling and got.texts == ("hi", "salut")
    assert got.measures["perplexity"] == [3.0, 4.0]
    assert list(list_steers(ws)["steer_id"]) == [sid]
    delete_steer(ws, sid)
    assert list_steers(ws).empty
    with pytest.raises(WorkspaceError):
        save_steer(ws, SavedSteer(" ", "p", SamplingConfig(), [], ("", "")))


def test_items_round_trip() -> None:
    items = [
        Intervention("L3/resid_post", 12, "additive", 2.0, positions="generated"),
        Intervention("L4/mlp_out", 7, "clamp", -1.5, positions="generated"),
    ]
    assert parse_items(format_items(items), positions="generated") == items
    assert parse_items("L3/resid_post:4") == [Intervention("L3/resid_post", 4)]
    for bad in ("L3/resid_post", "L3/resid_post:4:shift:1", "L3/resid_post:4:clamp:x"):
        with pytest.raises(SteeringError):
            parse_items(bad)
